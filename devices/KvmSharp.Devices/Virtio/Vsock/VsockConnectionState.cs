namespace KvmSharp.Devices.Virtio.Vsock;

/// <summary>Where a vsock connection is in its life (the host's view).</summary>
public enum VsockConnectionState
{
    /// <summary>A host client connected to the listening socket; its <c>CONNECT port</c> line has not arrived yet.</summary>
    AwaitingConnectLine,
    /// <summary>REQUEST is (to be) sent to the guest; waiting for its RESPONSE or RST.</summary>
    AwaitingGuestResponse,
    /// <summary>Data flows both ways.</summary>
    Established,
    /// <summary>The guest shut down both ways: the host socket gets what is buffered, then the connection is reset.</summary>
    Closing,
}
