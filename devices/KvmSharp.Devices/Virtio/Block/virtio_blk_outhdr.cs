using System.Runtime.InteropServices;
using KvmSharp.Devices.Virtio.Queues;

namespace KvmSharp.Devices.Virtio.Block;

/// <summary>The header at the start of every virtio-blk request's readable part (little-endian).</summary>
[StructLayout(LayoutKind.Sequential)]
[VirtioLayout("linux/virtio_blk.h", "struct virtio_blk_outhdr")]
public struct virtio_blk_outhdr
{
    public const int Size = 16;

    /// <summary><see cref="VirtioBlockRequestType"/>.</summary>
    public uint type;
    public uint ioprio;
    /// <summary>First 512-byte sector.</summary>
    public ulong sector;
}
