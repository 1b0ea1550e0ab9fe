using System.Runtime.InteropServices;

namespace KvmSharp.Devices.Virtio.Block;

/// <summary>
/// A drive's image could not be opened. The message is one line: the drive, what failed (operation and
/// errno) and the fix. The CLI maps it to exit status 2.
/// </summary>
public sealed class BlockImageException(BlockImageError error, string path, string operation, int errno, string fix)
    : IOException(Describe(path, operation, errno, fix))
{
    public BlockImageError Error { get; } = error;

    public string Path { get; } = path;

    /// <summary>The call that failed, e.g. "open" or "fcntl(F_OFD_SETLK)".</summary>
    public string Operation { get; } = operation;

    /// <summary>The errno of the failed call (0 when the check was KvmSharp's own).</summary>
    public int Errno { get; } = errno;

    private static string Describe(string path, string operation, int errno, string fix)
        => errno == 0
            ? $"--drive file={path}: {operation}; {fix}"
            : $"--drive file={path}: {operation} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}); {fix}";
}
