using System.Runtime.InteropServices;

namespace KvmSharp.Devices.Virtio.Net;

/// <summary>
/// A tap could not be opened or set up. One line: the tap, the failed call with its errno, and the fix.
/// The CLI exits 2 for a setting the user can fix (<see cref="IsHostFailure"/> false), 70 otherwise.
/// </summary>
public sealed class TapException(TapError error, string name, string operation, int errno, string fix)
    : IOException(Describe(name, operation, errno, fix))
{
    public TapError Error { get; } = error;

    public string Name { get; } = name;

    /// <summary>The call that failed, e.g. "ioctl(TUNSETIFF)" (or KvmSharp's own check).</summary>
    public string Operation { get; } = operation;

    /// <summary>The errno of the failed call (0 when the check was KvmSharp's own).</summary>
    public int Errno { get; } = errno;

    /// <summary>The host lacks what every tap needs (not something about this tap the user named).</summary>
    public bool IsHostFailure => Error == TapError.HostUnsupported;

    private static string Describe(string name, string operation, int errno, string fix)
        => errno == 0
            ? $"--net tap={name}: {operation}; {fix}"
            : $"--net tap={name}: {operation} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}); {fix}";
}
