using System.Runtime.InteropServices;

namespace KvmSharp.Devices.Virtio.Queues;

/// <summary>One entry of a split virtqueue's used ring: the head of a chain the device has finished, and how many bytes it wrote.</summary>
[StructLayout(LayoutKind.Sequential)]
[VirtioLayout("linux/virtio_ring.h", "struct vring_used_elem")]
public struct vring_used_elem
{
    public const int Size = 8;

    /// <summary>Index of the chain's head descriptor (32 bits for padding).</summary>
    public uint id;
    /// <summary>Bytes the device wrote into the chain's writable buffers.</summary>
    public uint len;
}
