using System.Buffers;
using KvmSharp.Devices.Events;

namespace KvmSharp.Devices.Virtio.Vsock;

/// <summary>
/// One stream between a host unix socket and a guest port, and its credit (virtio 1.2, 5.10.6.3):
/// the guest may send at most <see cref="BufferBytes"/> bytes the host has not yet forwarded to the
/// socket (we advertise buf_alloc and fwd_cnt), and the host may send at most what the guest's own
/// buf_alloc minus its unforwarded bytes allows. Guest bytes the socket does not take at once wait in
/// a ring of <see cref="BufferBytes"/> (rented on first need), so a host peer that does not read holds
/// at most that much per connection; host bytes are read only when the guest has credit and a buffer,
/// so they wait in the kernel's socket buffer. All counters are free-running 32-bit, as on the wire.
/// </summary>
public sealed class VsockConnection
{
    private byte[]? _ring;
    private int _ringStart;
    private int _ringCount;

    public VsockConnection(FileDescriptorHandle socket, uint hostPort, uint guestPort, VsockConnectionState state, uint bufferBytes)
    {
        Socket = socket;
        HostPort = hostPort;
        GuestPort = guestPort;
        State = state;
        BufferBytes = bufferBytes;
    }

    public FileDescriptorHandle Socket { get; }

    /// <summary>The host side's port (the CONNECT client's assigned port, or the port the guest connected to).</summary>
    public uint HostPort { get; internal set; }

    public uint GuestPort { get; internal set; }

    public VsockConnectionState State { get; internal set; }

    /// <summary>Our buf_alloc: the most guest bytes held for the host socket.</summary>
    public uint BufferBytes { get; }

    /// <summary>Guest bytes forwarded to the host socket (our fwd_cnt).</summary>
    public uint ForwardedCount { get; private set; }

    /// <summary>The fwd_cnt the guest last heard from us.</summary>
    public uint AdvertisedForwardedCount { get; private set; }

    /// <summary>Host bytes sent to the guest (our tx_cnt).</summary>
    public uint SentCount { get; private set; }

    /// <summary>The guest's buf_alloc and fwd_cnt, from its latest packet on this connection.</summary>
    public uint PeerBufferBytes { get; private set; }

    public uint PeerForwardedCount { get; private set; }

    /// <summary>Guest bytes waiting for the host socket.</summary>
    public int BufferedCount => _ringCount;

    public VsockPendingPacket Pending { get; internal set; }

    /// <summary>The flags of a pending SHUTDOWN.</summary>
    public VirtioVsockShutdown ShutdownToSend { get; internal set; }

    /// <summary>The host socket reported data (or EOF) that has not been read yet.</summary>
    public bool HostReadable { get; internal set; }

    /// <summary>The host peer closed its side entirely (EPOLLHUP), not just shut down its writing.</summary>
    public bool HostHungUp { get; internal set; }

    /// <summary>The host socket read EOF: nothing more comes from the host.</summary>
    public bool HostEof { get; internal set; }

    /// <summary>The guest sent SHUTDOWN with SEND: nothing more comes from the guest.</summary>
    public bool GuestSendShutdown { get; internal set; }

    /// <summary>The guest sent SHUTDOWN with RCV: it takes nothing more.</summary>
    public bool GuestReceiveShutdown { get; internal set; }

    /// <summary>We asked the guest for credit and have not heard back.</summary>
    public bool CreditRequested { get; internal set; }

    /// <summary>In the device's round-robin of connections with something for the guest.</summary>
    internal bool Queued { get; set; }

    /// <summary>epoll token (slot and generation).</summary>
    internal ulong Token { get; set; }

    /// <summary>The events the socket is armed for (EPOLLONESHOT), 0 when disarmed.</summary>
    internal uint ArmedEvents { get; set; }

    /// <summary>The CONNECT line read so far (host-initiated connections only).</summary>
    internal byte[]? Line { get; set; }

    /// <summary>Bytes the host may send the guest now.</summary>
    public uint PeerCredit
    {
        get
        {
            uint inFlight = SentCount - PeerForwardedCount;
            return inFlight >= PeerBufferBytes ? 0 : PeerBufferBytes - inFlight;
        }
    }

    /// <summary>Whether host bytes should be read for the guest now.</summary>
    public bool WantsHostData => State == VsockConnectionState.Established && !HostEof && !GuestReceiveShutdown && PeerCredit > 0;

    /// <summary>Take the guest's credit fields from a packet it sent on this connection.</summary>
    public void UpdatePeerCredit(uint bufferBytes, uint forwardedCount)
    {
        PeerBufferBytes = bufferBytes;
        PeerForwardedCount = forwardedCount;
        if (PeerCredit > 0)
        {
            CreditRequested = false;
        }
    }

    /// <summary>Count <paramref name="bytes"/> sent to the guest.</summary>
    public void CountSent(uint bytes) => SentCount += bytes;

    /// <summary>The credit fields of a packet about to be sent: the guest now knows our fwd_cnt.</summary>
    public void Advertise(out uint bufferBytes, out uint forwardedCount)
    {
        bufferBytes = BufferBytes;
        forwardedCount = ForwardedCount;
        AdvertisedForwardedCount = ForwardedCount;
        Pending &= ~VsockPendingPacket.CreditUpdate;
    }

    /// <summary>Count <paramref name="bytes"/> forwarded to the host socket; true when the guest should hear of it (a quarter of the buffer freed since it last heard).</summary>
    public bool CountForwarded(uint bytes)
    {
        ForwardedCount += bytes;
        return ForwardedCount - AdvertisedForwardedCount >= BufferBytes / 4;
    }

    /// <summary>Whether <paramref name="bytes"/> more guest bytes fit the credit we gave (the guest keeps to it unless broken or hostile).</summary>
    public bool FitsOurCredit(uint bytes) => (ulong)_ringCount + bytes <= BufferBytes;

    /// <summary>Hold guest bytes for the host socket (after <see cref="FitsOurCredit"/>).</summary>
    public Span<byte> ReserveBuffered(int bytes, out Span<byte> second)
    {
        _ring ??= ArrayPool<byte>.Shared.Rent((int)BufferBytes);
        int capacity = (int)BufferBytes;
        int end = (_ringStart + _ringCount) % capacity;
        int first = Math.Min(bytes, capacity - end);
        _ringCount += bytes;
        second = _ring.AsSpan(0, bytes - first);
        return _ring.AsSpan(end, first);
    }

    /// <summary>The oldest held guest bytes in one contiguous piece (the rest follows after <see cref="ConsumeBuffered"/>).</summary>
    public ReadOnlySpan<byte> PeekBuffered()
        => _ring is null || _ringCount == 0 ? default : _ring.AsSpan(_ringStart, Math.Min(_ringCount, (int)BufferBytes - _ringStart));

    /// <summary>Drop <paramref name="bytes"/> held bytes the socket took.</summary>
    public void ConsumeBuffered(int bytes)
    {
        _ringStart = (_ringStart + bytes) % (int)BufferBytes;
        _ringCount -= bytes;
        if (_ringCount == 0)
        {
            _ringStart = 0;
        }
    }

    /// <summary>Return the ring to the pool (the connection is gone).</summary>
    internal void ReleaseBuffer()
    {
        if (_ring is not null)
        {
            ArrayPool<byte>.Shared.Return(_ring);
            _ring = null;
        }

        _ringStart = _ringCount = 0;
    }
}
