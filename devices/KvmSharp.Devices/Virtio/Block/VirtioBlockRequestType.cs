namespace KvmSharp.Devices.Virtio.Block;

/// <summary>virtio_blk_outhdr.type values (linux/virtio_blk.h).</summary>
public enum VirtioBlockRequestType : uint
{
    VIRTIO_BLK_T_IN = 0,
    VIRTIO_BLK_T_OUT = 1,
    VIRTIO_BLK_T_FLUSH = 4,
    VIRTIO_BLK_T_GET_ID = 8,
    VIRTIO_BLK_T_DISCARD = 11,
    VIRTIO_BLK_T_WRITE_ZEROES = 13,
}
