namespace KvmSharp.Devices.Virtio.Block;

/// <summary>virtio-blk feature bits (linux/virtio_blk.h), as bit numbers.</summary>
public static class VirtioBlockFeatures
{
    public const int VIRTIO_BLK_F_SIZE_MAX = 1;
    public const int VIRTIO_BLK_F_SEG_MAX = 2;
    public const int VIRTIO_BLK_F_GEOMETRY = 4;
    public const int VIRTIO_BLK_F_RO = 5;
    public const int VIRTIO_BLK_F_BLK_SIZE = 6;
    public const int VIRTIO_BLK_F_FLUSH = 9;
    public const int VIRTIO_BLK_F_TOPOLOGY = 10;
    public const int VIRTIO_BLK_F_CONFIG_WCE = 11;
    public const int VIRTIO_BLK_F_MQ = 12;
    public const int VIRTIO_BLK_F_DISCARD = 13;
    public const int VIRTIO_BLK_F_WRITE_ZEROES = 14;

    /// <summary>GET_ID's answer length.</summary>
    public const int VIRTIO_BLK_ID_BYTES = 20;
}
