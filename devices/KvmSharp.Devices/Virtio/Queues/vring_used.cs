using System.Runtime.InteropServices;

namespace KvmSharp.Devices.Virtio.Queues;

/// <summary>
/// The header of a split virtqueue's used ring (device to driver). In guest memory it is followed by
/// <c>ring[size]</c> (<see cref="vring_used_elem"/>) and, with EVENT_IDX, <c>avail_event</c>.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
[VirtioLayout("linux/virtio_ring.h", "struct vring_used")]
public struct vring_used
{
    /// <summary>Offset of <c>ring[0]</c>.</summary>
    public const int RingOffset = 4;

    /// <summary>VRING_USED_F_NO_NOTIFY.</summary>
    public ushort flags;
    /// <summary>Where the device will put the next used element (free-running).</summary>
    public ushort idx;
}
