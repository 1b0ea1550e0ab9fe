using System.Runtime.InteropServices;

namespace KvmSharp.Devices.Virtio.Queues;

/// <summary>One entry of a split virtqueue's descriptor table (little-endian in guest memory).</summary>
[StructLayout(LayoutKind.Sequential)]
[VirtioLayout("linux/virtio_ring.h", "struct vring_desc")]
public struct vring_desc
{
    public const int Size = 16;

    /// <summary>Guest-physical address of the buffer.</summary>
    public ulong addr;
    public uint len;
    /// <summary><see cref="VringFlags"/> VRING_DESC_F_*.</summary>
    public ushort flags;
    /// <summary>The next descriptor's index when VRING_DESC_F_NEXT is set.</summary>
    public ushort next;
}
