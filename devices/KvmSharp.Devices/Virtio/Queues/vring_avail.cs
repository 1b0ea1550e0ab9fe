using System.Runtime.InteropServices;

namespace KvmSharp.Devices.Virtio.Queues;

/// <summary>
/// The header of a split virtqueue's available ring (driver to device). In guest memory it is followed
/// by <c>ring[size]</c> (16-bit heads) and, with EVENT_IDX, <c>used_event</c>.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
[VirtioLayout("linux/virtio_ring.h", "struct vring_avail")]
public struct vring_avail
{
    /// <summary>Offset of <c>ring[0]</c>.</summary>
    public const int RingOffset = 4;

    /// <summary>VRING_AVAIL_F_NO_INTERRUPT.</summary>
    public ushort flags;
    /// <summary>Where the driver will put the next head (free-running, wraps at 2^16).</summary>
    public ushort idx;
}
