using System.Runtime.InteropServices;
using Tmds.Linux;

namespace KvmSharp.Devices.Virtio.Block;

/// <summary>The Linux calls the block back end needs that Tmds.LibC does not bind (vectored positional I/O, fallocate modes).</summary>
internal static unsafe partial class BlockSyscalls
{
    /// <summary>fallocate mode: keep the file size (linux/falloc.h).</summary>
    public const int FALLOC_FL_KEEP_SIZE = 0x01;
    /// <summary>fallocate mode: deallocate the range; it reads back as zeros.</summary>
    public const int FALLOC_FL_PUNCH_HOLE = 0x02;
    /// <summary>fallocate mode: make the range read back as zeros, keeping it allocated.</summary>
    public const int FALLOC_FL_ZERO_RANGE = 0x10;

    /// <summary>ioctl on a block device: discard a byte range given as uint64[2] {start, length} (linux/fs.h, _IO(0x12, 119)).</summary>
    public const uint BLKDISCARD = 0x1277;
    /// <summary>ioctl on a block device: make a byte range uint64[2] {start, length} read back as zeros (linux/fs.h, _IO(0x12, 127)).</summary>
    public const uint BLKZEROOUT = 0x127F;

    /// <summary>Most iovecs one preadv/pwritev takes (UIO_MAXIOV).</summary>
    public const int IOV_MAX = 1024;

    [LibraryImport("libc", EntryPoint = "preadv", SetLastError = true)]
    public static partial nint preadv(int fd, iovec* iov, int iovcnt, long offset);

    [LibraryImport("libc", EntryPoint = "pwritev", SetLastError = true)]
    public static partial nint pwritev(int fd, iovec* iov, int iovcnt, long offset);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    public static partial int ioctl(int fd, nuint request, ulong* range);

    [LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    public static partial int fallocate(int fd, int mode, long offset, long length);
}
