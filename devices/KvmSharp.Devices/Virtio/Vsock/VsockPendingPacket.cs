namespace KvmSharp.Devices.Virtio.Vsock;

/// <summary>Control packets a connection owes the guest (at most one of each kind is ever pending).</summary>
[Flags]
public enum VsockPendingPacket
{
    None = 0,
    Request = 1,
    Response = 2,
    Shutdown = 4,
    CreditUpdate = 8,
    CreditRequest = 16,
    Reset = 32,
}
