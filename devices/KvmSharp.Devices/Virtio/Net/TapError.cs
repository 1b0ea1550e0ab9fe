namespace KvmSharp.Devices.Virtio.Net;

/// <summary>Why a tap could not be attached.</summary>
public enum TapError
{
    /// <summary>No network interface has the name.</summary>
    Missing,
    /// <summary>The interface exists but is not a tap (a tun, a bridge, a physical NIC...).</summary>
    NotATap,
    /// <summary>No permission (CAP_NET_ADMIN, or the tap's owner/group).</summary>
    AccessDenied,
    /// <summary>Another process holds the tap, or it was created with other flags (multi_queue).</summary>
    Busy,
    /// <summary>The host has no /dev/net/tun (the tun module is not loaded) or refused a tun ioctl: a host failure, not a bad setting.</summary>
    HostUnsupported,
}
