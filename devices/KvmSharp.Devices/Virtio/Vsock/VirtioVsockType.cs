namespace KvmSharp.Devices.Virtio.Vsock;

/// <summary>Socket types (enum virtio_vsock_type); KvmSharp serves streams only (SEQPACKET is not offered).</summary>
public enum VirtioVsockType : ushort
{
    VIRTIO_VSOCK_TYPE_STREAM = 1,
    VIRTIO_VSOCK_TYPE_SEQPACKET = 2,
}
