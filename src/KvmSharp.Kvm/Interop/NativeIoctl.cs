using System.Runtime.InteropServices;

namespace KvmSharp.Kvm.Interop;

/// <summary>
/// The one ioctl entry point. LibraryImport keeps the call blittable and allocation-free on the
/// KVM_RUN path; errno comes back through SetLastError.
/// </summary>
internal static unsafe partial class NativeIoctl
{
    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int ioctl(int fd, nuint request, nint argument);

    /// <summary>Issue the ioctl; returns its result, or -errno.</summary>
    public static int Invoke(int fd, uint request, nint argument)
    {
        int result = ioctl(fd, request, argument);
        return result >= 0 ? result : -Marshal.GetLastPInvokeError();
    }

    public static int Invoke(int fd, uint request, void* argument) => Invoke(fd, request, (nint)argument);

    /// <summary>Issue the ioctl and throw <see cref="KvmException"/> on failure.</summary>
    public static int Checked(int fd, uint request, nint argument)
    {
        int result = Invoke(fd, request, argument);
        if (result < 0) throw new KvmException(KvmIoctls.NameOf(request), -result);
        return result;
    }

    public static int Checked(int fd, uint request, void* argument) => Checked(fd, request, (nint)argument);
}
