using System.Text;
using KvmSharp.Kvm.Interop;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Cli;

/// <summary>
/// Checks on the serial console file before anything creates or opens it for real. Guest files
/// (kernel, initrd, image) are checked by the VMM's own <see cref="Vmm.Boot.GuestFile"/>.
/// </summary>
public static unsafe class InputFiles
{
    /// <summary>
    /// Null when the serial console can go to <paramref name="path"/>: an existing file (or device, or
    /// FIFO) that opens for writing, or a new file in an existing, writable directory. Otherwise why not.
    /// Nothing is created or truncated here.
    /// </summary>
    public static string? WhyNotWritable(string path)
    {
        if (path.Length == 0) return "give stdout or the path of a file";
        if (Stat(path, out stat status, out int errno))
        {
            if (S_ISDIR(status.st_mode)) return "is a directory; give the path of a file (or stdout)";
            // A FIFO opened for writing waits for a reader; the sink deals with that when it starts.
            if (S_ISFIFO(status.st_mode)) return null;
            int fd = OpenNoFollowUp(path, O_WRONLY | O_NONBLOCK | O_NOCTTY);
            if (fd < 0) return $"cannot be opened for writing: {Errno.Describe(-fd)}";
            close(fd);
            return null;
        }
        if (errno != Errno.ENOENT) return $"cannot look at the file: {Errno.Describe(errno)}";
        return WhyNotCreatable(path);
    }

    /// <summary>
    /// Null when a unix socket can listen at <paramref name="path"/>: nothing there, or a stale socket
    /// (replaced), in an existing, writable directory. Otherwise why not. Nothing is created here.
    /// </summary>
    public static string? WhyNoSocket(string path)
    {
        if (path.Length == 0) return "give the path of a socket";
        if (Stat(path, out stat status, out int errno))
            return S_ISSOCK(status.st_mode) ? WhyNotCreatable(path) : "exists and is not a socket; remove it or give another path";
        if (errno != Errno.ENOENT) return $"cannot look at the file: {Errno.Describe(errno)}";
        return WhyNotCreatable(path);
    }

    private static string? WhyNotCreatable(string path)
    {
        string directory = Path.GetDirectoryName(Path.GetFullPath(path)) ?? "/";
        if (!Stat(directory, out stat parent, out int errno))
            return errno == Errno.ENOENT ? $"the directory {directory} does not exist" : $"cannot look at {directory}: {Errno.Describe(errno)}";
        if (!S_ISDIR(parent.st_mode)) return $"{directory} is not a directory";
        if (Access(directory, W_OK | X_OK) is int denied and not 0) return $"cannot create a file in {directory}: {Errno.Describe(denied)}";
        return null;
    }

    private static bool Stat(string path, out stat status, out int errno)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        fixed (stat* s = &status)
        {
            int result = stat(p, s);
            errno = result == 0 ? 0 : LibC.errno;
            return result == 0;
        }
    }

    // Opened and closed at once, only to learn whether the kernel allows it; returns the fd or -errno.
    private static int OpenNoFollowUp(string path, int flags)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        {
            int fd = open(p, flags | O_CLOEXEC, 0);
            return fd >= 0 ? fd : -LibC.errno;
        }
    }

    private static int Access(string path, int mode)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        {
            return access(p, mode) == 0 ? 0 : LibC.errno;
        }
    }
}
