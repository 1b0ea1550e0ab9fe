using System.Runtime.InteropServices;
using KvmSharp.Devices.Virtio.Queues;

namespace KvmSharp.Devices.Virtio.Block;

/// <summary>
/// virtio-blk's device configuration space (packed, little-endian), up to the secure-erase fields;
/// newer headers append zoned fields, which KvmSharp does not offer (they read as zero).
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
[VirtioLayout("linux/virtio_blk.h", "struct virtio_blk_config", sizeIsMinimum: true)]
public struct virtio_blk_config
{
    /// <summary>Offset of <see cref="wce"/>, the one field a driver writes.</summary>
    public const uint WceOffset = 32;

    /// <summary>Size in 512-byte sectors.</summary>
    public ulong capacity;
    public uint size_max;
    /// <summary>Most data segments in one request (VIRTIO_BLK_F_SEG_MAX).</summary>
    public uint seg_max;
    [VirtioFieldName("geometry.cylinders")]
    public ushort geometry_cylinders;
    [VirtioFieldName("geometry.heads")]
    public byte geometry_heads;
    [VirtioFieldName("geometry.sectors")]
    public byte geometry_sectors;
    /// <summary>Logical block size (VIRTIO_BLK_F_BLK_SIZE).</summary>
    public uint blk_size;
    public byte physical_block_exp;
    public byte alignment_offset;
    public ushort min_io_size;
    public uint opt_io_size;
    /// <summary>1: writeback cache (FLUSH needed for durability); 0: write-through (VIRTIO_BLK_F_CONFIG_WCE).</summary>
    public byte wce;
    public byte unused;
    public ushort num_queues;
    public uint max_discard_sectors;
    public uint max_discard_seg;
    public uint discard_sector_alignment;
    public uint max_write_zeroes_sectors;
    public uint max_write_zeroes_seg;
    public byte write_zeroes_may_unmap;
    [VirtioFieldName("unused1[0]")]
    public byte unused1_0;
    [VirtioFieldName("unused1[1]")]
    public byte unused1_1;
    [VirtioFieldName("unused1[2]")]
    public byte unused1_2;
    public uint max_secure_erase_sectors;
    public uint max_secure_erase_seg;
    public uint secure_erase_sector_alignment;
}
