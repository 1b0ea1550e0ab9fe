using System.Runtime.InteropServices;
using KvmSharp.Devices.Virtio.Queues;

namespace KvmSharp.Devices.Virtio.Net;

/// <summary>
/// The header before every packet on both queues (virtio 1.x, little-endian; the tap reads and writes the
/// same 12 bytes once TUNSETVNETHDRSZ is 12). The tap fills the first ten on receive; the device sets
/// <see cref="num_buffers"/>: how many receive buffers the packet spans.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
[VirtioLayout("linux/virtio_net.h", "struct virtio_net_hdr_v1")]
public struct virtio_net_hdr_v1
{
    public const int Size = 12;

    /// <summary>Offset of <see cref="num_buffers"/>.</summary>
    public const int NumBuffersOffset = 10;

    public byte flags;
    public byte gso_type;
    public ushort hdr_len;
    public ushort gso_size;
    public ushort csum_start;
    public ushort csum_offset;
    public ushort num_buffers;
}
