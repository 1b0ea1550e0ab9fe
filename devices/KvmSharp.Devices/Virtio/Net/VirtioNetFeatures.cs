namespace KvmSharp.Devices.Virtio.Net;

/// <summary>virtio-net feature bits and status values (linux/virtio_net.h), as masks.</summary>
public static class VirtioNetFeatures
{
    /// <summary>The device takes packets with a partial checksum (the driver may leave it to the host).</summary>
    public const ulong VIRTIO_NET_F_CSUM = 1UL << 0;
    /// <summary>The driver takes packets with a partial checksum.</summary>
    public const ulong VIRTIO_NET_F_GUEST_CSUM = 1UL << 1;
    /// <summary>The configuration space holds the MTU.</summary>
    public const ulong VIRTIO_NET_F_MTU = 1UL << 3;
    /// <summary>The configuration space holds the MAC address.</summary>
    public const ulong VIRTIO_NET_F_MAC = 1UL << 5;
    public const ulong VIRTIO_NET_F_GUEST_TSO4 = 1UL << 7;
    public const ulong VIRTIO_NET_F_GUEST_TSO6 = 1UL << 8;
    public const ulong VIRTIO_NET_F_GUEST_ECN = 1UL << 9;
    public const ulong VIRTIO_NET_F_GUEST_UFO = 1UL << 10;
    public const ulong VIRTIO_NET_F_HOST_TSO4 = 1UL << 11;
    public const ulong VIRTIO_NET_F_HOST_TSO6 = 1UL << 12;
    public const ulong VIRTIO_NET_F_HOST_ECN = 1UL << 13;
    /// <summary>A received packet may span several receive buffers (num_buffers in its header).</summary>
    public const ulong VIRTIO_NET_F_MRG_RXBUF = 1UL << 15;
    /// <summary>The configuration space holds the link status.</summary>
    public const ulong VIRTIO_NET_F_STATUS = 1UL << 16;

    /// <summary>config.status: the link is up.</summary>
    public const ushort VIRTIO_NET_S_LINK_UP = 1;

    public const byte VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
    public const byte VIRTIO_NET_HDR_GSO_NONE = 0;
    public const byte VIRTIO_NET_HDR_GSO_TCPV4 = 1;
    public const byte VIRTIO_NET_HDR_GSO_TCPV6 = 4;
}
