using System.Runtime.InteropServices;
using System.Text;
using KvmSharp.Kvm;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Memory.Regions;

/// <summary>
/// A block of host memory that backs guest memory: anonymous, or a memfd that another process
/// (a device backend, a tracker) can map too. Unmapped when disposed, which the VM does on teardown.
/// </summary>
public sealed unsafe class GuestMemoryRegion : IDisposable
{
    public const ulong PageSize = 4096;

    private nint _address;
    private int _fd;

    private GuestMemoryRegion(nint address, ulong size, int fd, string name)
    {
        _address = address;
        Size = size;
        _fd = fd;
        Name = name;
    }

    public string Name { get; }
    public ulong Size { get; }

    /// <summary>Host virtual address of the first byte (what KVM calls userspace_addr).</summary>
    public ulong HostAddress => (ulong)(_address != 0 ? _address : throw new ObjectDisposedException(Name));

    /// <summary>The memfd backing this region, or -1 for anonymous memory.</summary>
    public int FileDescriptor => _fd;

    /// <summary>Alignment of anonymous regions: a transparent huge page, so KVM can map the guest with 2 MiB pages.</summary>
    public const ulong HugePageSize = 2UL << 20;

    /// <summary>
    /// Private anonymous memory, 2 MiB aligned and advised for transparent huge pages (as QEMU does): with 4 KiB
    /// host pages (a MAP_SHARED mapping is shmem, which gets no THP by default) every guest page is a separate
    /// fault and a separate stage-2 mapping, which made a Linux boot in the nested testbed about 3x slower.
    /// </summary>
    public static GuestMemoryRegion CreateAnonymous(ulong size, string name = "guest-ram")
    {
        CheckSize(size, name);
        ulong reserve = size >= HugePageSize ? size + HugePageSize : size;
        void* raw = mmap(null, (size_t)reserve, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (raw == MAP_FAILED) throw new KvmException("mmap", errno, $"anonymous region '{name}' of {size} bytes");
        ulong start = (ulong)raw;
        if (reserve != size)
        {
            // Trim the reservation to a 2 MiB-aligned window of the requested size.
            start = ((ulong)raw + HugePageSize - 1) & ~(HugePageSize - 1);
            if (start > (ulong)raw) munmap(raw, (size_t)(start - (ulong)raw));
            ulong end = (ulong)raw + reserve;
            if (end > start + size) munmap((void*)(start + size), (size_t)(end - (start + size)));
            // Advice only: a kernel without THP refuses it and the memory works with 4 KiB pages.
            madvise((void*)start, (size_t)size, MADV_HUGEPAGE);
        }
        return new GuestMemoryRegion((nint)start, size, -1, name);
    }

    /// <summary>A memfd-backed region; <see cref="FileDescriptor"/> can be passed to another process.</summary>
    public static GuestMemoryRegion CreateMemfd(ulong size, string name = "guest-ram")
    {
        CheckSize(size, name);
        const uint MFD_CLOEXEC = 1;
        byte[] nameBytes = Encoding.UTF8.GetBytes("kvmsharp:" + name + "\0");
        int fd;
        fixed (byte* n = nameBytes) fd = memfd_create(n, MFD_CLOEXEC);
        if (fd < 0) throw new KvmException("memfd_create", errno, $"region '{name}'");
        if (ftruncate(fd, (off_t)(long)size) != 0)
        {
            int error = errno;
            close(fd);
            throw new KvmException("ftruncate", error, $"memfd region '{name}' to {size} bytes");
        }
        void* address = mmap(null, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (address == MAP_FAILED)
        {
            int error = errno;
            close(fd);
            throw new KvmException("mmap", error, $"memfd region '{name}' of {size} bytes");
        }
        return new GuestMemoryRegion((nint)address, size, fd, name);
    }

    private static void CheckSize(ulong size, string name)
    {
        if (size == 0 || size % PageSize != 0)
            throw new ArgumentException($"guest memory region '{name}': size {size} must be a non-zero multiple of {PageSize}", nameof(size));
    }

    /// <summary>A span over part of the region; bounds are checked.</summary>
    public Span<byte> AsSpan(ulong offset, int length)
    {
        if (offset > Size || (ulong)length > Size - offset)
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset:x}, +{length:x}) is outside region '{Name}' of {Size:x} bytes");
        return new Span<byte>((byte*)HostAddress + offset, length);
    }

    /// <summary>Raw pointer at <paramref name="offset"/> for the hot path; the caller checks bounds.</summary>
    public byte* PointerAt(ulong offset) => (byte*)_address + offset;

    public void Write(ulong offset, ReadOnlySpan<byte> data) => data.CopyTo(AsSpan(offset, data.Length));

    public void Dispose()
    {
        nint address = Interlocked.Exchange(ref _address, 0);
        if (address != 0) munmap((void*)address, (size_t)Size);
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0) close(fd);
    }
}
