using System.Runtime.InteropServices;

namespace KvmSharp.Devices.Virtio.Net;

/// <summary>
/// struct ifreq (linux/if.h) as TUNSETIFF and SIOCGIFMTU take it: the interface name and the flags and mtu members of its
/// union (the union is 24 bytes: struct ifmap is the largest member).
/// </summary>
#pragma warning disable CS8981 // the C name, as the layout test greps it
[StructLayout(LayoutKind.Explicit, Size = 40)]
public unsafe struct ifreq
{
    /// <summary>IFNAMSIZ: the name's bytes including the terminating NUL.</summary>
    public const int IFNAMSIZ = 16;

    [FieldOffset(0)]
    public fixed byte ifr_name[IFNAMSIZ];

    [FieldOffset(16)]
    public short ifr_flags;

    /// <summary>SIOCGIFMTU's answer (the same union).</summary>
    [FieldOffset(16)]
    public int ifr_mtu;
}
#pragma warning restore CS8981
