using System.Runtime.InteropServices;
using KvmSharp.Devices.Virtio.Queues;

namespace KvmSharp.Devices.Virtio.Block;

/// <summary>One range of a DISCARD or WRITE_ZEROES request (the data after the header).</summary>
[StructLayout(LayoutKind.Sequential)]
[VirtioLayout("linux/virtio_blk.h", "struct virtio_blk_discard_write_zeroes")]
public struct virtio_blk_discard_write_zeroes
{
    public const int Size = 16;

    /// <summary>VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP: the zeroed range may be deallocated.</summary>
    public const uint VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1;

    public ulong sector;
    public uint num_sectors;
    public uint flags;
}
