using System.Runtime.InteropServices;
using KvmSharp.Devices.Virtio.Queues;

namespace KvmSharp.Devices.Virtio.Net;

/// <summary>virtio-net's device configuration space (packed, little-endian). KvmSharp fills mac, status, max_virtqueue_pairs and mtu; the rest reads as zero (features not offered).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
[VirtioLayout("linux/virtio_net.h", "struct virtio_net_config", sizeIsMinimum: true)]
public unsafe struct virtio_net_config
{
    public fixed byte mac[6];
    /// <summary><see cref="VirtioNetFeatures.VIRTIO_NET_S_LINK_UP"/> (VIRTIO_NET_F_STATUS).</summary>
    public ushort status;
    public ushort max_virtqueue_pairs;
    /// <summary>The MTU the driver should use (VIRTIO_NET_F_MTU).</summary>
    public ushort mtu;
    public uint speed;
    public byte duplex;
    public byte rss_max_key_size;
    public ushort rss_max_indirection_table_length;
    public uint supported_hash_types;
}
