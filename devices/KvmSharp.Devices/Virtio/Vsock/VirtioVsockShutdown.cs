namespace KvmSharp.Devices.Virtio.Vsock;

/// <summary>SHUTDOWN flags (enum virtio_vsock_shutdown): what the sender of the packet will no longer do.</summary>
[Flags]
public enum VirtioVsockShutdown : uint
{
    None = 0,
    /// <summary>The sender will receive no more data.</summary>
    VIRTIO_VSOCK_SHUTDOWN_RCV = 1,
    /// <summary>The sender will send no more data.</summary>
    VIRTIO_VSOCK_SHUTDOWN_SEND = 2,
}
