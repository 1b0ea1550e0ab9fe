using System.Runtime.InteropServices;
using Tmds.Linux;

namespace KvmSharp.Devices.Virtio.Net;

/// <summary>The tun/tap uAPI (linux/if_tun.h, linux/if.h): ioctl numbers, interface and offload flags, and the calls Tmds.LibC does not bind.</summary>
public static unsafe partial class TunIoctls
{
    public const uint TUNSETIFF = 0x400454ca;
    public const uint TUNGETFEATURES = 0x800454cf;
    public const uint TUNSETOFFLOAD = 0x400454d0;
    public const uint TUNGETIFF = 0x800454d2;
    public const uint TUNSETVNETHDRSZ = 0x400454d8;

    /// <summary>Read an interface's MTU (linux/sockios.h), on any socket.</summary>
    public const uint SIOCGIFMTU = 0x8921;

    public const short IFF_TAP = 0x0002;
    public const short IFF_MULTI_QUEUE = 0x0100;
    public const short IFF_NO_PI = 0x1000;
    public const short IFF_VNET_HDR = 0x4000;

    public const uint TUN_F_CSUM = 0x01;
    public const uint TUN_F_TSO4 = 0x02;
    public const uint TUN_F_TSO6 = 0x04;
    public const uint TUN_F_TSO_ECN = 0x08;

    /// <summary>Most iovecs one readv/writev takes (UIO_MAXIOV).</summary>
    public const int IOV_MAX = 1024;

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    internal static partial int ioctl(int fd, nuint request, nint argument);

    [LibraryImport("libc", EntryPoint = "if_nametoindex", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial uint if_nametoindex(string name);

    [LibraryImport("libc", EntryPoint = "readv", SetLastError = true)]
    internal static partial nint readv(int fd, iovec* iov, int iovcnt);

    [LibraryImport("libc", EntryPoint = "writev", SetLastError = true)]
    internal static partial nint writev(int fd, iovec* iov, int iovcnt);
}
