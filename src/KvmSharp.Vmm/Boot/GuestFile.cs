using System.Runtime.InteropServices;
using System.Text;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Vmm.Boot;

/// <summary>
/// Opens a file the user named as guest content (kernel, initrd, flat image) and reads it whole,
/// after checking that it is a regular file no larger than a limit. A directory, a device such as
/// /dev/zero or a FIFO is refused before a byte is read, so nothing reads gigabytes or blocks.
/// Errors: <see cref="InvalidDataException"/> for a file of the wrong kind or size,
/// <see cref="FileNotFoundException"/> when it does not exist, <see cref="IOException"/> for
/// any other failure to open or read it (with the errno). Each message names the file.
/// </summary>
public static unsafe class GuestFile
{
    // File types of st_mode (<sys/stat.h>), as constants for the switch below.
    private const uint FileTypeMask = 0xF000, Fifo = 0x1000, CharacterDevice = 0x2000, Directory = 0x4000;
    private const uint BlockDevice = 0x6000, Regular = 0x8000, SymbolicLink = 0xA000, Socket = 0xC000;

    /// <summary>Largest kernel accepted: a vmlinux with debug info is a few hundred MiB.</summary>
    public const long MaxKernelBytes = 1L << 30;

    /// <summary>Largest file read into one array (an initrd or image is also bounded by guest RAM).</summary>
    public static long MaxBytes => Array.MaxLength;

    /// <summary>At most <paramref name="memoryBytes"/> and <see cref="MaxBytes"/>, as a limit for <see cref="Read"/>.</summary>
    public static long MaxBytesWithin(ulong memoryBytes) => (long)Math.Min(memoryBytes, (ulong)MaxBytes);

    /// <summary>Check kind and size without reading; returns the size in bytes.</summary>
    /// <param name="limit">what the maximum is, for the message ("the guest's 64 MiB of memory"); default "the N limit for a WHAT"</param>
    public static long Check(string path, string what, long maxBytes, string? limit = null)
    {
        int fd = OpenRegular(path, what, maxBytes, limit, out long size);
        close(fd);
        return size;
    }

    /// <summary>Read the whole file after the checks of <see cref="Check"/>.</summary>
    public static byte[] Read(string path, string what, long maxBytes, string? limit = null)
    {
        int fd = OpenRegular(path, what, maxBytes, limit, out long size);
        try
        {
            var bytes = new byte[size];
            long done = 0;
            fixed (byte* buffer = bytes)
            {
                while (done < size)
                {
                    ssize_t n = read(fd, buffer + done, (size_t)(ulong)Math.Min(size - done, 1L << 30));
                    if (n < 0)
                    {
                        int error = errno;
                        if (error == EINTR) continue;
                        throw new IOException($"{what} '{path}': read failed: {Errno(error)}");
                    }
                    if (n == 0) throw new InvalidDataException($"{what} '{path}' shrank while it was read ({done} of {size} bytes)");
                    done += n;
                }
            }
            return bytes;
        }
        finally
        {
            close(fd);
        }
    }

    /// <summary>"5 GiB", "300 MiB", "12 KiB" or "100 bytes": the size as a user would say it.</summary>
    public static string FormatSize(ulong bytes) => bytes switch
    {
        >= 1UL << 30 when bytes % (1UL << 30) == 0 => $"{bytes >> 30} GiB",
        >= 1UL << 30 => $"{bytes / (double)(1UL << 30):0.#} GiB",
        >= 1UL << 20 when bytes % (1UL << 20) == 0 => $"{bytes >> 20} MiB",
        >= 1UL << 20 => $"{bytes / (double)(1UL << 20):0.#} MiB",
        >= 1UL << 10 => $"{bytes / (double)(1UL << 10):0.#} KiB",
        _ => $"{bytes} bytes",
    };

    // stat before open, so a device or FIFO is never opened (no side effect, no blocking); fstat
    // after, so what was read is what was checked even if the path changed in between.
    private static int OpenRegular(string path, string what, long maxBytes, string? limit, out long size)
    {
        if (string.IsNullOrEmpty(path)) throw new InvalidDataException($"{what}: the path is empty");
        if (path.Contains('\0')) throw new InvalidDataException($"{what} '{path.Replace("\0", "\\0")}': the path contains a NUL character");
        byte[] pathBytes = Encoding.UTF8.GetBytes(path + "\0");
        stat status;
        fixed (byte* p = pathBytes)
        {
            if (stat(p, &status) != 0) throw OpenError(path, what, errno);
            CheckKind(path, what, status, maxBytes, limit);
            int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0);
            if (fd < 0) throw OpenError(path, what, errno);
            if (fstat(fd, &status) != 0)
            {
                int error = errno;
                close(fd);
                throw new IOException($"{what} '{path}': fstat failed: {Errno(error)}");
            }
            try
            {
                CheckKind(path, what, status, maxBytes, limit);
            }
            catch
            {
                close(fd);
                throw;
            }
            size = (long)status.st_size;
            return fd;
        }
    }

    private static void CheckKind(string path, string what, in stat status, long maxBytes, string? limit)
    {
        uint type = (uint)status.st_mode & FileTypeMask;
        if (type == Directory) throw new InvalidDataException($"{what} '{path}' is a directory; give a file");
        if (type != Regular) throw new InvalidDataException($"{what} '{path}' is not a regular file ({KindName(type)}); give a file");
        long size = (long)status.st_size;
        if (size <= 0) throw new InvalidDataException($"{what} '{path}' is empty");
        if (size > maxBytes)
            throw new InvalidDataException($"{what} '{path}' is {FormatSize((ulong)size)}, larger than {limit ?? $"the {FormatSize((ulong)maxBytes)} limit for a {what}"}");
    }

    private static string KindName(uint type) => type switch
    {
        CharacterDevice => "character device",
        BlockDevice => "block device",
        Fifo => "FIFO",
        Socket => "socket",
        SymbolicLink => "symbolic link",
        _ => $"file type 0x{type:x}",
    };

    private static Exception OpenError(string path, string what, int error)
    {
        if (error == ENOENT) return new FileNotFoundException($"{what} '{path}' does not exist", path);
        if (error == ENOTDIR) return new FileNotFoundException($"{what} '{path}' does not exist (a part of the path is not a directory)", path);
        return new IOException($"{what} '{path}' cannot be opened: {Errno(error)}");
    }

    private static string Errno(int error) => $"{Marshal.GetPInvokeErrorMessage(error)} (errno {error})";
}
