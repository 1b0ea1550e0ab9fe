using System.Runtime.InteropServices;
using Tmds.Linux;

namespace KvmSharp.Devices.Virtio.Net;

/// <summary>
/// Where virtio-net's packets go and come from: a tap (<see cref="TapDevice"/>), or a fake in tests. Every
/// frame carries the 12-byte <see cref="virtio_net_hdr_v1"/> first. Called on the event loop only.
/// </summary>
public interface INetBackend : IDisposable
{
    /// <summary>The interface name, for messages.</summary>
    string Name { get; }

    /// <summary>Readable when a frame waits: the device watches it on the event loop.</summary>
    SafeHandle Handle { get; }

    /// <summary>The receive offloads (TUN_F_*) the back end accepts, so the device offers the matching guest features.</summary>
    uint SupportedOffloads { get; }

    /// <summary>The interface's MTU (the largest frame without GSO is MTU + Ethernet header).</summary>
    int Mtu { get; }

    /// <summary>Which partial-checksum and GSO frames the back end may deliver (TUN_F_*, what the driver negotiated); false with errno when refused.</summary>
    bool TrySetOffloads(uint offloads, out int errno);

    /// <summary>Read one frame into <paramref name="vectors"/> (scatter): its length, 0 when none waits, or -errno.</summary>
    unsafe nint Receive(iovec* vectors, int count);

    /// <summary>Write one frame from <paramref name="vectors"/> (gather): bytes written or -errno.</summary>
    unsafe nint Send(iovec* vectors, int count);
}
