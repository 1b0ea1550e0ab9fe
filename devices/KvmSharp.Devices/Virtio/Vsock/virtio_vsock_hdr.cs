using System.Runtime.InteropServices;
using KvmSharp.Devices.Virtio.Queues;

namespace KvmSharp.Devices.Virtio.Vsock;

/// <summary>The header in front of every virtio-vsock packet, both directions (little-endian, packed).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
[VirtioLayout("linux/virtio_vsock.h", "struct virtio_vsock_hdr")]
public struct virtio_vsock_hdr
{
    public const int Size = 44;

    public ulong src_cid;
    public ulong dst_cid;
    public uint src_port;
    public uint dst_port;
    /// <summary>Payload bytes after the header (RW only).</summary>
    public uint len;
    /// <summary><see cref="VirtioVsockType"/>.</summary>
    public ushort type;
    /// <summary><see cref="VirtioVsockOp"/>.</summary>
    public ushort op;
    /// <summary>SHUTDOWN: <see cref="VirtioVsockShutdown"/> bits.</summary>
    public uint flags;
    /// <summary>The sender's receive buffer for this connection (credit).</summary>
    public uint buf_alloc;
    /// <summary>Bytes the sender has taken out of that buffer so far (free-running).</summary>
    public uint fwd_cnt;
}
