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

    public static GuestMemoryRegion CreateAnonymous(ulong size, string name = "guest-ram")
    {
        CheckSize(size, name);
        void* address = mmap(null, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (address == MAP_FAILED) throw new KvmException("mmap", errno, $"anonymous region '{name}' of {size} bytes");
        return new GuestMemoryRegion((nint)address, size, -1, name);
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
