using System.Text;
using KvmSharp.Kvm.Interop;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Cli;

/// <summary>
/// Checks on the files settings name, made before anything reads or creates them: what the path is
/// (a regular file, a directory, a device, ...), its size, and whether it can be opened.
/// </summary>
public static unsafe class InputFiles
{
    /// <summary>The size of <paramref name="path"/>, which must be a regular, readable file; otherwise an <see cref="OptionsException"/> saying what it is.</summary>
    public static ulong RequireRegularFile(RunSetting setting, string path)
    {
        if (path.Length == 0) throw new OptionsException(setting, path, "give the path of a file");
        if (!Stat(path, out stat status, out int errno))
            throw new OptionsException(setting, path, errno == Errno.ENOENT ? "the file does not exist" : $"cannot look at the file: {Errno.Describe(errno)}");
        if (!S_ISREG(status.st_mode))
            throw new OptionsException(setting, path, $"is {Kind(status.st_mode)}, not a regular file; give the path of a file");
        int fd = OpenNoFollowUp(path, O_RDONLY);
        if (fd < 0) throw new OptionsException(setting, path, $"the file cannot be read: {Errno.Describe(-fd)}");
        close(fd);
        return (ulong)(long)status.st_size;
    }

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
        string directory = Path.GetDirectoryName(Path.GetFullPath(path)) ?? "/";
        if (!Stat(directory, out stat parent, out errno))
            return errno == Errno.ENOENT ? $"the directory {directory} does not exist" : $"cannot look at {directory}: {Errno.Describe(errno)}";
        if (!S_ISDIR(parent.st_mode)) return $"{directory} is not a directory";
        if (Access(directory, W_OK | X_OK) is int denied and not 0) return $"cannot create a file in {directory}: {Errno.Describe(denied)}";
        return null;
    }

    private static string Kind(mode_t mode) =>
        S_ISDIR(mode) ? "a directory" :
        S_ISCHR(mode) ? "a character device" :
        S_ISBLK(mode) ? "a block device" :
        S_ISFIFO(mode) ? "a FIFO" :
        S_ISSOCK(mode) ? "a socket" : "not a regular file";

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
