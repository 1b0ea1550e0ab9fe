namespace KvmSharp.Devices.Virtio.Block;

/// <summary>Why a drive's image could not be opened (all are errors before boot; the CLI exits 2).</summary>
public enum BlockImageError
{
    /// <summary>The file does not exist.</summary>
    Missing,
    /// <summary>Permission denied, or a read-write open of a read-only file or filesystem.</summary>
    AccessDenied,
    /// <summary>Not a regular file or block device (a directory, a FIFO...).</summary>
    NotAnImage,
    /// <summary>Another process holds a conflicting lock: another VM uses the image.</summary>
    Locked,
    /// <summary>cache=none, but the filesystem refuses O_DIRECT.</summary>
    DirectIoUnsupported,
    /// <summary>Any other failure of open, fstat, fcntl or lseek (the errno says which).</summary>
    Other,
}
