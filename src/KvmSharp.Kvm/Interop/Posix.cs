using System.Text;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Kvm.Interop;

/// <summary>The few libc calls the KVM layer needs beyond ioctl, with errors turned into exceptions.</summary>
internal static unsafe class Posix
{
    public const int O_RDWR = 2;
    public const int O_CLOEXEC = 0x80000;

    /// <summary>open(2); returns the fd or -errno.</summary>
    public static int Open(string path, int flags)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        {
            int fd = open(p, flags, 0);
            return fd >= 0 ? fd : -errno;
        }
    }

    public static void Close(int fd)
    {
        if (fd >= 0) close(fd);
    }

    /// <summary>mmap(2) of a shared mapping of <paramref name="fd"/> (or anonymous memory when fd is -1).</summary>
    public static nint MapShared(int fd, ulong length, bool writable = true, string what = "mmap", long offset = 0)
    {
        int prot = PROT_READ | (writable ? PROT_WRITE : 0);
        int flags = MAP_SHARED | (fd < 0 ? MAP_ANONYMOUS : 0);
        void* address = mmap(null, (size_t)length, prot, flags, fd, offset);
        if (address == MAP_FAILED) throw new KvmException(what, errno, $"mapping {length} bytes");
        return (nint)address;
    }

    public static void Unmap(nint address, ulong length)
    {
        if (address != 0) munmap((void*)address, (size_t)length);
    }
}
