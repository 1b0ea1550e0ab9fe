namespace KvmSharp.Devices.Virtio.Block;

/// <summary>The status byte a virtio-blk request ends with (linux/virtio_blk.h).</summary>
public enum VirtioBlockStatus : byte
{
    VIRTIO_BLK_S_OK = 0,
    VIRTIO_BLK_S_IOERR = 1,
    VIRTIO_BLK_S_UNSUPP = 2,
}
