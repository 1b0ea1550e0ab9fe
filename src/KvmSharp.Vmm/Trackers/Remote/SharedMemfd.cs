using System.Text;
using KvmSharp.Devices.Events;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Vmm.Trackers.Remote;

/// <summary>A memfd mapped shared, as the event ring lives in (created by the VMM, or received by a tracker).</summary>
public sealed unsafe class SharedMemfd : IDisposable
{
    private nint _address;
    private int _fd;

    private SharedMemfd(int fd, nint address, ulong size)
    {
        _fd = fd;
        _address = address;
        Size = size;
    }

    public ulong Size { get; }
    public int FileDescriptor => _fd;
    public byte* Pointer => (byte*)_address;

    public static SharedMemfd Create(string name, ulong size)
    {
        const uint MFD_CLOEXEC = 1;
        byte[] nameBytes = Encoding.UTF8.GetBytes("kvmsharp:" + name + "\0");
        int fd;
        fixed (byte* n = nameBytes) fd = memfd_create(n, MFD_CLOEXEC);
        if (fd < 0) throw new HostCallException("memfd_create", errno, name);
        if (ftruncate(fd, (long)size) != 0)
        {
            int error = errno;
            close(fd);
            throw new HostCallException("ftruncate", error, $"{name} to {size} bytes");
        }
        return Map(fd, size, name);
    }

    /// <summary>Map <paramref name="fd"/> (owned from now on) read-write and shared.</summary>
    public static SharedMemfd Map(int fd, ulong size, string name)
    {
        void* address = mmap(null, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (address == MAP_FAILED)
        {
            int error = errno;
            close(fd);
            throw new HostCallException("mmap", error, $"{name} of {size} bytes");
        }
        return new SharedMemfd(fd, (nint)address, size);
    }

    public void Dispose()
    {
        nint address = Interlocked.Exchange(ref _address, 0);
        if (address != 0) munmap((void*)address, (size_t)Size);
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0) close(fd);
    }
}
