namespace KvmSharp.Devices.Virtio.Vsock;

/// <summary>Event ids (enum virtio_vsock_event_id).</summary>
public enum VirtioVsockEventId : uint
{
    /// <summary>Every connection is gone (and the guest should read its CID again): the driver resets its sockets.</summary>
    VIRTIO_VSOCK_EVENT_TRANSPORT_RESET = 0,
}
