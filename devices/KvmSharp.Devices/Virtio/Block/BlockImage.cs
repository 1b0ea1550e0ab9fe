using System.Text;
using Microsoft.Win32.SafeHandles;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Devices.Virtio.Block;

/// <summary>
/// A drive's raw image, opened before boot: a regular file or a block device, read-only (O_RDONLY)
/// or read-write, with O_DIRECT for cache=none, and locked so two VMs cannot use one image in
/// conflicting ways. The lock is an open-file-description lock (fcntl F_OFD_SETLK) over the whole
/// file: a write lock for read-write, a read lock for read-only, so any number of read-only users may
/// share an image but a writer excludes everyone (the idea of QEMU's image locking, simplified to one
/// range). The lock lives as long as the descriptor. Thread-safe: positional I/O only.
/// </summary>
public sealed unsafe class BlockImage : IDisposable
{
    /// <summary>Bytes per virtio-blk sector.</summary>
    public const int SectorSize = 512;

    private readonly SafeFileHandle _handle;
    private readonly byte[] _serial;
    private int _zeroRangeUnsupported;

    private BlockImage(DriveSpec spec, SafeFileHandle handle, long length, bool isBlockDevice, bool canPunchHoles)
    {
        Spec = spec;
        _handle = handle;
        _serial = Encoding.ASCII.GetBytes(spec.Serial ?? "");
        Length = length;
        IsBlockDevice = isBlockDevice;
        CanPunchHoles = canPunchHoles;
    }

    public DriveSpec Spec { get; }

    /// <summary>Size in bytes when opened.</summary>
    public long Length { get; }

    /// <summary>Whole sectors: what the guest sees (a partial last sector is not addressable).</summary>
    public ulong CapacitySectors => (ulong)Length / SectorSize;

    public bool ReadOnly => Spec.ReadOnly;

    public bool IsBlockDevice { get; }

    /// <summary>The file supports fallocate(PUNCH_HOLE) (probed at open past the end of file, which changes nothing): discard is offered.</summary>
    public bool CanPunchHoles { get; }

    /// <summary>
    /// Discard is offered: a file with holes (<see cref="CanPunchHoles"/>), or a block device whose queue
    /// discards (sysfs discard_max_bytes &gt; 0). A discarded range of a block device need not read back as zeros.
    /// </summary>
    public bool CanDiscard { get; private init; }

    /// <summary>GET_ID's answer: the serial's ASCII bytes (at most 20).</summary>
    public ReadOnlySpan<byte> SerialBytes => _serial;

    /// <summary>The descriptor; valid until <see cref="Dispose"/> (the device stops its I/O before that).</summary>
    internal int Descriptor => (int)_handle.DangerousGetHandle();

    /// <summary>
    /// Open, check and lock the image <paramref name="spec"/> names. Throws <see cref="BlockImageException"/>
    /// (missing, not readable or writable, not a file or block device, locked by another process,
    /// O_DIRECT refused) with a one-line message; nothing is left open then.
    /// </summary>
    public static BlockImage Open(DriveSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        string path = spec.Path;
        int flags = (spec.ReadOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (spec.DirectIo ? O_DIRECT : 0);
        int fd;
        fixed (byte* p = Encoding.UTF8.GetBytes(path + "\0"))
        {
            do
            {
                fd = open(p, flags, 0);
            }
            while (fd < 0 && errno == EINTR);
        }

        if (fd < 0)
        {
            int error = errno;
            throw error switch
            {
                _ when error == ENOENT || error == ENOTDIR => new BlockImageException(BlockImageError.Missing, path, "open", error, "check the path given to file="),
                _ when error == EACCES || error == EPERM || error == EROFS => new BlockImageException(BlockImageError.AccessDenied, path, spec.ReadOnly ? "open for reading" : "open for reading and writing", error,
                    spec.ReadOnly ? "make the image readable by this user" : "make the image writable by this user, or add readonly=on"),
                _ when error == EINVAL && spec.DirectIo => new BlockImageException(BlockImageError.DirectIoUnsupported, path, "open with O_DIRECT", error, "this filesystem does not support cache=none; leave cache=none out"),
                _ when error == EISDIR => new BlockImageException(BlockImageError.NotAnImage, path, "open", error, "give a raw image file or a block device, not a directory"),
                _ => new BlockImageException(BlockImageError.Other, path, "open", error, "check the image"),
            };
        }

        var handle = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            stat status;
            if (fstat(fd, &status) != 0)
            {
                throw new BlockImageException(BlockImageError.Other, path, "fstat", errno, "check the image");
            }

            bool isBlockDevice = S_ISBLK(status.st_mode);
            if (!isBlockDevice && !S_ISREG(status.st_mode))
            {
                throw new BlockImageException(BlockImageError.NotAnImage, path, "is not a regular file or block device", 0, "give a raw image file or a block device");
            }

            Lock(fd, spec);

            long length = lseek(fd, 0, SEEK_END);
            if (length < 0)
            {
                throw new BlockImageException(BlockImageError.Other, path, "lseek(SEEK_END)", errno, "check the image");
            }

            bool canPunch = !spec.ReadOnly && !isBlockDevice && ProbePunchHole(fd, length);
            bool canDiscard = canPunch || (!spec.ReadOnly && isBlockDevice && BlockDeviceDiscards(status.st_rdev));
            return new BlockImage(spec, handle, length, isBlockDevice, canPunch) { CanDiscard = canDiscard };
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static void Lock(int fd, DriveSpec spec)
    {
        var request = new flock
        {
            l_type = (short)(spec.ReadOnly ? F_RDLCK : F_WRLCK),
            l_whence = (short)SEEK_SET,
            l_start = 0,
            l_len = 0, // to the end of the file, however it grows
        };
        int result;
        do
        {
            result = fcntl(fd, F_OFD_SETLK, &request);
        }
        while (result < 0 && errno == EINTR);

        if (result == 0)
        {
            return;
        }

        int error = errno;
        if (error == EAGAIN || error == EACCES)
        {
            throw new BlockImageException(BlockImageError.Locked, spec.Path, spec.ReadOnly ? "lock for shared reading" : "lock for exclusive writing", error,
                spec.ReadOnly
                    ? "another process (another VM?) or another --drive of this VM has the image open for writing; stop it or drop that --drive"
                    : "another process (another VM?) or another --drive of this VM uses the image; stop it, drop that --drive, or give every user readonly=on");
        }

        throw new BlockImageException(BlockImageError.Other, spec.Path, "fcntl(F_OFD_SETLK)", error, "check that the filesystem supports locks");
    }

    // Punching a hole past the end of file with KEEP_SIZE succeeds where holes are supported and changes no data.
    private static bool ProbePunchHole(int fd, long length)
        => BlockSyscalls.fallocate(fd, BlockSyscalls.FALLOC_FL_PUNCH_HOLE | BlockSyscalls.FALLOC_FL_KEEP_SIZE, length, 4096) == 0;

    /// <summary>Read into the host buffers <paramref name="vectors"/> from <paramref name="offset"/>; 0, or the errno. A short read (end of file) is EIO.</summary>
    internal int ReadVectors(iovec* vectors, int count, long offset) => TransferVectors(vectors, count, offset, write: false);

    /// <summary>Write the host buffers <paramref name="vectors"/> at <paramref name="offset"/>; 0, or the errno.</summary>
    internal int WriteVectors(iovec* vectors, int count, long offset) => TransferVectors(vectors, count, offset, write: true);

    /// <summary>fdatasync: what the guest wrote reaches stable storage. 0, or the errno.</summary>
    public int Flush()
    {
        int result;
        do
        {
            result = fdatasync(Descriptor);
        }
        while (result < 0 && errno == EINTR);

        return result == 0 ? 0 : errno;
    }

    /// <summary>Discard <c>[offset, offset + length)</c>: a punched hole in a file, BLKDISCARD on a block device. 0, or the errno.</summary>
    public int Discard(long offset, long length)
        => IsBlockDevice ? BlockRangeIoctl(BlockSyscalls.BLKDISCARD, offset, length) : PunchHole(offset, length);

    private int BlockRangeIoctl(uint request, long offset, long length)
    {
        ulong* range = stackalloc ulong[2];
        range[0] = (ulong)offset;
        range[1] = (ulong)length;
        int result;
        do
        {
            result = BlockSyscalls.ioctl(Descriptor, request, range);
        }
        while (result < 0 && errno == EINTR);

        return result == 0 ? 0 : errno;
    }

    // A block device (or partition) discards when its queue says so; a partition's queue is its disk's.
    private static bool BlockDeviceDiscards(ulong device)
    {
        uint major = (uint)(((device >> 8) & 0xFFF) | ((device >> 32) & ~0xFFFUL));
        uint minor = (uint)((device & 0xFF) | ((device >> 12) & ~0xFFUL));
        string node = $"/sys/dev/block/{major}:{minor}";
        foreach (string path in new[] { $"{node}/queue/discard_max_bytes", $"{node}/../queue/discard_max_bytes" })
        {
            try
            {
                if (File.Exists(path)) return ulong.TryParse(File.ReadAllText(path).Trim(), out ulong max) && max > 0;
            }
            catch (IOException)
            {
                return false;
            }
        }

        return false;
    }

    /// <summary>Deallocate <c>[offset, offset + length)</c>; it reads back as zeros. 0, or the errno (EOPNOTSUPP where unsupported).</summary>
    public int PunchHole(long offset, long length)
        => Fallocate(BlockSyscalls.FALLOC_FL_PUNCH_HOLE | BlockSyscalls.FALLOC_FL_KEEP_SIZE, offset, length);

    /// <summary>
    /// Make <c>[offset, offset + length)</c> read back as zeros: fallocate(ZERO_RANGE) where the file supports
    /// it, else a punched hole when <paramref name="mayUnmap"/> allows, BLKZEROOUT on a block device, else written zeros. 0, or the errno.
    /// </summary>
    public int WriteZeroes(long offset, long length, bool mayUnmap)
    {
        if (mayUnmap && CanPunchHoles && PunchHole(offset, length) == 0)
        {
            return 0;
        }

        // The kernel uses the device's WRITE ZEROES where it has one and writes zeros otherwise.
        if (IsBlockDevice && BlockRangeIoctl(BlockSyscalls.BLKZEROOUT, offset, length) == 0)
        {
            return 0;
        }

        if (!IsBlockDevice && Volatile.Read(ref _zeroRangeUnsupported) == 0)
        {
            int result = Fallocate(BlockSyscalls.FALLOC_FL_ZERO_RANGE | BlockSyscalls.FALLOC_FL_KEEP_SIZE, offset, length);
            if (result == 0)
            {
                return 0;
            }

            if (result != EOPNOTSUPP && result != ENOTSUP)
            {
                return result;
            }

            Volatile.Write(ref _zeroRangeUnsupported, 1);
        }

        return WriteZeroBytes(offset, length);
    }

    private int WriteZeroBytes(long offset, long length)
    {
        const int chunk = 64 * 1024;
        // Aligned, so it also suits O_DIRECT.
        void* zeros = System.Runtime.InteropServices.NativeMemory.AlignedAlloc(chunk, 4096);
        try
        {
            System.Runtime.InteropServices.NativeMemory.Clear(zeros, chunk);
            var vector = new iovec();
            while (length > 0)
            {
                int n = (int)Math.Min(length, chunk);
                vector.iov_base = zeros;
                vector.iov_len = (size_t)(ulong)n;
                int result = TransferVectors(&vector, 1, offset, write: true);
                if (result != 0)
                {
                    return result;
                }

                offset += n;
                length -= n;
            }

            return 0;
        }
        finally
        {
            System.Runtime.InteropServices.NativeMemory.AlignedFree(zeros);
        }
    }

    private int Fallocate(int mode, long offset, long length)
    {
        int result;
        do
        {
            result = BlockSyscalls.fallocate(Descriptor, mode, offset, length);
        }
        while (result < 0 && errno == EINTR);

        return result == 0 ? 0 : errno;
    }

    // Loops over short transfers by advancing the vectors in place (they are the caller's scratch).
    private int TransferVectors(iovec* vectors, int count, long offset, bool write)
    {
        int fd = Descriptor;
        while (true)
        {
            while (count > 0 && vectors->iov_len == 0)
            {
                vectors++;
                count--;
            }

            if (count == 0)
            {
                return 0;
            }

            nint done = write
                ? BlockSyscalls.pwritev(fd, vectors, Math.Min(count, BlockSyscalls.IOV_MAX), offset)
                : BlockSyscalls.preadv(fd, vectors, Math.Min(count, BlockSyscalls.IOV_MAX), offset);
            if (done < 0)
            {
                int error = errno;
                if (error == EINTR)
                {
                    continue;
                }

                return error;
            }

            if (done == 0)
            {
                // End of file inside a range that was checked against the size: the image shrank.
                return EIO;
            }

            offset += done;
            while (count > 0 && done >= (nint)(ulong)vectors->iov_len)
            {
                done -= (nint)(ulong)vectors->iov_len;
                vectors++;
                count--;
            }

            if (done > 0)
            {
                vectors->iov_base = (byte*)vectors->iov_base + done;
                vectors->iov_len = (size_t)((ulong)vectors->iov_len - (ulong)done);
            }
        }
    }

    /// <summary>Close the image (which drops its lock).</summary>
    public void Dispose() => _handle.Dispose();
}
