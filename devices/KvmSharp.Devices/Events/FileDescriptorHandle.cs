using System.Runtime.InteropServices;
using static Tmds.Linux.LibC;

namespace KvmSharp.Devices.Events;

/// <summary>A file descriptor owned as a SafeHandle: held by ref-count for the length of a call, closed exactly once.</summary>
public class FileDescriptorHandle : SafeHandle
{
    /// <summary>Take ownership of <paramref name="fd"/>.</summary>
    public FileDescriptorHandle(int fd) : base(invalidHandleValue: -1, ownsHandle: true) => SetHandle(fd);

    public override bool IsInvalid => handle < 0;

    protected override bool ReleaseHandle() => close((int)handle) == 0;
}
