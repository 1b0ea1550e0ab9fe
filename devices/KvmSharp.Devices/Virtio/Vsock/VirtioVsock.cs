using System.Buffers.Text;
using System.Runtime.InteropServices;
using KvmSharp.Devices.Events;
using KvmSharp.Devices.Memory;
using KvmSharp.Devices.Virtio.Queues;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Devices.Virtio.Vsock;

/// <summary>
/// virtio-vsock (stream sockets) with Firecracker's hybrid protocol on the host side. Host-initiated:
/// a client connects to the unix socket <see cref="VsockSpec.SocketPath"/>, writes <c>CONNECT port\n</c>,
/// gets <c>OK hostport\n</c> once the guest accepted (or is closed when it refused), then a byte stream.
/// Guest-initiated to host port P: the device connects to <c>SocketPath_P</c> (refused: the guest gets RST).
/// Everything runs on the VM's event loop: the device's own epoll instance holds the listening socket
/// and every connection's socket (one-shot, re-armed for what the connection can do next), and the
/// loop watches that instance. Flow control is the spec's credit scheme (see <see cref="VsockConnection"/>),
/// so host memory per connection is bounded by its buffer whatever the guest or the host peer does.
/// Queues: 0 receive (device to driver), 1 transmit, 2 events (TRANSPORT_RESET on <see cref="ResetTransport"/>
/// and when a driver activates the device again).
/// </summary>
/// <example><code>var vsock = new VirtioVsock(new VsockSpec(3, "/run/vm1/vsock.sock"), machine.EventLoop, logger);</code></example>
public sealed unsafe class VirtioVsock : IVirtioDevice
{
    /// <summary>The host's context id (VMADDR_CID_HOST).</summary>
    public const ulong HostCid = 2;

    public const ushort DefaultQueueSize = 256;

    /// <summary>Our buf_alloc per connection: the most guest bytes held for a host socket that does not read.</summary>
    public const uint DefaultBufferBytes = 128 * 1024;

    /// <summary>Open connections at most (more are refused), so the buffers stay bounded: 256 x 128 KiB.</summary>
    public const int DefaultMaxConnections = 256;

    /// <summary>The first port given to host-initiated connections (as Firecracker does: high, away from guest listeners).</summary>
    public const uint FirstHostPort = 1u << 30;

    /// <summary>The most payload one receive packet carries.</summary>
    public const int MaxPayloadPerPacket = 64 * 1024;

    private const int ReceiveQueue = 0;
    private const int TransmitQueue = 1;
    private const int EventQueue = 2;
    private const ulong ListenerToken = 0;
    private const int ConnectLineBytes = 32;
    private const int EventsPerWait = 64;
    private const uint Readable = 0x001; // EPOLLIN
    private const uint Writable = 0x004; // EPOLLOUT
    private const uint ErrorEvent = 0x008; // EPOLLERR
    private const uint HangUp = 0x010; // EPOLLHUP
    private const uint ReadHangUp = 0x2000; // EPOLLRDHUP
    private const uint OneShot = 1u << 30; // EPOLLONESHOT

    private readonly VsockSpec _spec;
    private readonly ILogger _logger;
    private readonly object _gate = new();
    private readonly uint _bufferBytes;
    private readonly FileDescriptorHandle _epoll;
    private readonly FileDescriptorHandle _listener;
    private readonly IDisposable _watch;
    private readonly VsockConnection?[] _slots;
    private readonly uint[] _generations;
    private readonly Dictionary<ulong, VsockConnection> _byPorts;
    private readonly Queue<VsockConnection> _ready;
    private readonly Queue<(uint HostPort, uint GuestPort)> _orphanResets;
    private readonly int _maxOrphanResets;
    private readonly DescriptorChain _rxChain = new();
    private readonly DescriptorChain _txChain = new();
    private readonly DescriptorChain _eventChain = new();
    private readonly byte[] _bounce = new byte[MaxPayloadPerPacket];
    private SplitVirtqueue?[] _queues = new SplitVirtqueue?[3];
    private VirtioActivation? _activation;
    private bool _rxHeld;
    private bool _needsResetReported;
    private bool _transportResetPending;
    private int _activations;
    private int _open;
    private uint _nextHostPort = FirstHostPort;
    private bool _disposed;

    /// <param name="spec">The guest's cid and the socket path (checked with <see cref="VsockSocketPath.WhyUnsafe"/> beforehand).</param>
    /// <param name="loop">The VM's event loop; the device's sockets are served on it.</param>
    public VirtioVsock(VsockSpec spec, IEventLoop loop, ILogger<VirtioVsock>? logger = null, ushort queueSize = DefaultQueueSize,
        uint bufferBytes = DefaultBufferBytes, int maxConnections = DefaultMaxConnections)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(loop);
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferBytes, 4096u);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxConnections, 1);
        _spec = spec;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _bufferBytes = bufferBytes;
        _slots = new VsockConnection?[maxConnections];
        _generations = new uint[maxConnections];
        _byPorts = new Dictionary<ulong, VsockConnection>(maxConnections);
        _ready = new Queue<VsockConnection>(2 * maxConnections);
        _maxOrphanResets = maxConnections + 64;
        _orphanResets = new Queue<(uint, uint)>(_maxOrphanResets);
        QueueMaxSizes = [queueSize, queueSize, queueSize];

        int epoll = epoll_create1(EPOLL_CLOEXEC);
        if (epoll < 0)
        {
            throw new HostCallException("epoll_create1", errno, "virtio-vsock");
        }

        _epoll = new FileDescriptorHandle(epoll);
        try
        {
            _listener = VsockSocketPath.Listen(spec.SocketPath);
            var registration = new epoll_event { events = (int)Readable };
            registration.data.u64 = ListenerToken;
            if (epoll_ctl(epoll, EPOLL_CTL_ADD, (int)_listener.DangerousGetHandle(), &registration) != 0)
            {
                throw new HostCallException("epoll_ctl", errno, "virtio-vsock listener");
            }

            _watch = loop.Watch(_epoll, ServeHostEvents);
        }
        catch
        {
            _listener?.Dispose();
            _epoll.Dispose();
            throw;
        }

        VirtioVsockLog.Listening(_logger, spec.Cid, spec.SocketPath);
    }

    public VirtioDeviceType DeviceType => VirtioDeviceType.Vsock;

    public ulong AvailableFeatures => VirtioFeatureBits.VIRTIO_RING_F_EVENT_IDX | VirtioFeatureBits.VIRTIO_RING_F_INDIRECT_DESC;

    public IReadOnlyList<ushort> QueueMaxSizes { get; }

    public VsockSpec Spec => _spec;

    /// <summary>Connections open now (including host clients still sending their CONNECT line).</summary>
    public int OpenConnections
    {
        get
        {
            lock (_gate)
            {
                return _open;
            }
        }
    }

    /// <summary>The connection between host port <paramref name="hostPort"/> and guest port <paramref name="guestPort"/>, for tests and diagnostics.</summary>
    public VsockConnection? FindConnection(uint hostPort, uint guestPort)
    {
        lock (_gate)
        {
            return _byPorts.GetValueOrDefault(Key(hostPort, guestPort));
        }
    }

    public void ReadConfig(uint offset, Span<byte> data)
    {
        var config = new virtio_vsock_config { guest_cid = _spec.Cid };
        var bytes = MemoryMarshal.AsBytes(MemoryMarshal.CreateReadOnlySpan(ref config, 1));
        data.Clear();
        if (offset < (uint)bytes.Length)
        {
            var source = bytes[(int)offset..];
            source[..Math.Min(source.Length, data.Length)].CopyTo(data);
        }
    }

    public void WriteConfig(uint offset, ReadOnlySpan<byte> data)
    {
    }

    public void Activate(VirtioActivation activation)
    {
        ArgumentNullException.ThrowIfNull(activation);
        string? reset = null;
        lock (_gate)
        {
            _activation = activation;
            _needsResetReported = false;
            _rxHeld = false;
            _queues = new SplitVirtqueue?[3];
            for (int i = 0; i < 3 && reset is null; i++)
            {
                _queues[i] = SplitVirtqueue.FromActivation(activation, i, QueueName(i), out reset);
            }

            // A driver that set the device up again has lost every connection it knew.
            _transportResetPending = _activations++ > 0;
            if (reset is null)
            {
                reset = FlushEvents();
            }
        }

        if (reset is not null)
        {
            ReportNeedsReset(activation, reset);
        }
    }

    public void QueueNotify(int queueIndex)
    {
        string? reset;
        VirtioActivation? activation;
        lock (_gate)
        {
            activation = _activation;
            if (activation is null || _needsResetReported || queueIndex < 0 || queueIndex > EventQueue || _queues[queueIndex] is null)
            {
                return;
            }

            reset = queueIndex switch
            {
                TransmitQueue => ServeTransmit() ?? FlushReceive(),
                ReceiveQueue => FlushReceive(),
                _ => FlushEvents(),
            };
        }

        if (reset is not null)
        {
            ReportNeedsReset(activation, reset);
        }
    }

    /// <summary>
    /// Drop every connection (host sockets are closed) and tell the guest with VIRTIO_VSOCK_EVENT_TRANSPORT_RESET,
    /// so its sockets fail instead of waiting for peers that are gone (e.g. after the host side restarted).
    /// </summary>
    public void ResetTransport()
    {
        string? reset = null;
        VirtioActivation? activation;
        lock (_gate)
        {
            CloseAll();
            activation = _activation;
            _transportResetPending = true;
            if (activation is not null && !_needsResetReported)
            {
                reset = FlushEvents();
            }
        }

        if (reset is not null)
        {
            ReportNeedsReset(activation!, reset);
        }
    }

    public void Reset()
    {
        lock (_gate)
        {
            CloseAll();
            _activation = null;
            _queues = new SplitVirtqueue?[3];
            _rxHeld = false;
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        _watch.Dispose();
        Reset();
        _listener.Dispose();
        _epoll.Dispose();
        try
        {
            File.Delete(_spec.SocketPath);
        }
        catch (IOException)
        {
            // Someone else's by now; leave it.
        }
    }

    private static string QueueName(int index) => index switch
    {
        ReceiveQueue => "virtio-vsock's receive queue",
        TransmitQueue => "virtio-vsock's transmit queue",
        _ => "virtio-vsock's event queue",
    };

    private static bool IsTransient(int error) => error == EAGAIN || error == EINTR;

    private static ulong Key(uint hostPort, uint guestPort) => ((ulong)hostPort << 32) | guestPort;

    // ---- host side: the event loop ----------------------------------------------------------------

    private void ServeHostEvents()
    {
        string? reset = null;
        VirtioActivation? activation;
        var events = stackalloc epoll_event[EventsPerWait];
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            int count;
            do
            {
                count = epoll_wait((int)_epoll.DangerousGetHandle(), events, EventsPerWait, 0);
                for (int i = 0; i < count; i++)
                {
                    Dispatch(events[i].data.u64, unchecked((uint)events[i].events));
                }
            }
            while (count == EventsPerWait);

            activation = _activation;
            if (activation is not null && !_needsResetReported)
            {
                reset = FlushReceive();
            }
        }

        if (reset is not null)
        {
            ReportNeedsReset(activation!, reset);
        }
    }

    // Under _gate.
    private void Dispatch(ulong token, uint events)
    {
        if (token == ListenerToken)
        {
            AcceptClients();
            return;
        }

        int slot = (int)(uint)token - 1;
        if (slot < 0 || slot >= _slots.Length || _slots[slot] is not { } connection || connection.Token != token)
        {
            return; // closed earlier in this batch
        }

        connection.ArmedEvents = 0; // one-shot: disarmed until re-armed
        if ((events & HangUp) != 0)
        {
            connection.HostHungUp = true;
        }

        switch (connection.State)
        {
            case VsockConnectionState.AwaitingConnectLine:
                ReadConnectLine(connection);
                break;
            case VsockConnectionState.Established or VsockConnectionState.Closing:
                if ((events & (Readable | ReadHangUp | HangUp | ErrorEvent)) != 0 && connection.WantsHostData)
                {
                    connection.HostReadable = true;
                    Enqueue(connection);
                }

                if ((events & (Writable | HangUp | ErrorEvent)) != 0 && connection.BufferedCount > 0 && !DrainToHost(connection))
                {
                    return;
                }

                break;
        }

        if (_slots[slot] == connection)
        {
            Rearm(connection);
        }
    }

    private void AcceptClients()
    {
        while (VsockSocketPath.TryAccept(_listener) is { } socket)
        {
            if (_activation is null)
            {
                VirtioVsockLog.HostClientRefused(_logger, "the guest's vsock driver is not ready");
                socket.Dispose();
                continue;
            }

            var connection = new VsockConnection(socket, 0, 0, VsockConnectionState.AwaitingConnectLine, _bufferBytes);
            if (!TryAdd(connection))
            {
                socket.Dispose();
            }
        }
    }

    // A host client's "CONNECT <port>\n": peeked first so that bytes it sends after the line stay in the socket for the guest.
    private void ReadConnectLine(VsockConnection connection)
    {
        var line = connection.Line ??= new byte[ConnectLineBytes];
        int fd = (int)connection.Socket.DangerousGetHandle();
        nint peeked;
        fixed (byte* buffer = line)
        {
            peeked = (nint)recv(fd, buffer, (size_t)ConnectLineBytes, MSG_PEEK | MSG_DONTWAIT);
        }

        if (peeked < 0 && IsTransient(errno))
        {
            return;
        }

        if (peeked <= 0)
        {
            Close(connection, resetGuest: false);
            return;
        }

        int newline = line.AsSpan(0, (int)peeked).IndexOf((byte)'\n');
        if (newline < 0)
        {
            if (peeked == ConnectLineBytes || connection.HostHungUp)
            {
                RefuseClient(connection, "no CONNECT <port> line");
            }

            return;
        }

        fixed (byte* buffer = line)
        {
            recv(fd, buffer, (size_t)(newline + 1), MSG_DONTWAIT);
        }

        var text = line.AsSpan(0, newline).TrimEnd((byte)'\r');
        if (!text.StartsWith("CONNECT "u8) || !Utf8Parser.TryParse(text[8..], out uint port, out int consumed) || consumed != text.Length - 8)
        {
            RefuseClient(connection, "the first line is not CONNECT <port>");
            return;
        }

        if (_activation is null || _needsResetReported)
        {
            RefuseClient(connection, "the guest's vsock driver is not ready");
            return;
        }

        uint hostPort = _nextHostPort;
        while (_byPorts.ContainsKey(Key(hostPort, port)))
        {
            hostPort = hostPort == uint.MaxValue ? FirstHostPort : hostPort + 1;
        }

        _nextHostPort = hostPort == uint.MaxValue ? FirstHostPort : hostPort + 1;
        connection.HostPort = hostPort;
        connection.GuestPort = port;
        connection.Line = null;
        connection.State = VsockConnectionState.AwaitingGuestResponse;
        connection.UpdatePeerCredit(0, 0);
        _byPorts[Key(hostPort, port)] = connection;
        connection.Pending |= VsockPendingPacket.Request;
        Enqueue(connection);
    }

    private void RefuseClient(VsockConnection connection, string reason)
    {
        VirtioVsockLog.HostClientRefused(_logger, reason);
        Close(connection, resetGuest: false);
    }

    // Guest bytes held for the host socket, as far as it takes them. False when the connection is gone.
    private bool DrainToHost(VsockConnection connection)
    {
        int fd = (int)connection.Socket.DangerousGetHandle();
        while (connection.BufferedCount > 0)
        {
            var piece = connection.PeekBuffered();
            nint sent;
            fixed (byte* p = piece)
            {
                sent = (nint)send(fd, p, (size_t)piece.Length, MSG_NOSIGNAL | MSG_DONTWAIT);
            }

            if (sent < 0)
            {
                if (IsTransient(errno))
                {
                    return true;
                }

                Close(connection, resetGuest: true);
                return false;
            }

            connection.ConsumeBuffered((int)sent);
            Forwarded(connection, (uint)sent);
        }

        return AfterGuestShutdown(connection);
    }

    private void Forwarded(VsockConnection connection, uint bytes)
    {
        if (connection.CountForwarded(bytes))
        {
            connection.Pending |= VsockPendingPacket.CreditUpdate;
            Enqueue(connection);
        }
    }

    // Once nothing of the guest's is held: pass its SHUTDOWN on. False when the connection is gone.
    private bool AfterGuestShutdown(VsockConnection connection)
    {
        if (connection.BufferedCount > 0)
        {
            return true;
        }

        if (connection.State == VsockConnectionState.Closing)
        {
            Close(connection, resetGuest: true);
            return false;
        }

        if (connection.GuestSendShutdown)
        {
            shutdown((int)connection.Socket.DangerousGetHandle(), SHUT_WR);
        }

        return true;
    }

    // ---- connections ------------------------------------------------------------------------------

    private bool TryAdd(VsockConnection connection)
    {
        int slot = Array.IndexOf(_slots, null);
        if (slot < 0)
        {
            VirtioVsockLog.TooManyConnections(_logger, _open);
            return false;
        }

        uint generation = ++_generations[slot];
        connection.Token = ((ulong)generation << 32) | (uint)(slot + 1);
        var registration = new epoll_event { events = unchecked((int)OneShot) };
        registration.data.u64 = connection.Token;
        if (epoll_ctl((int)_epoll.DangerousGetHandle(), EPOLL_CTL_ADD, (int)connection.Socket.DangerousGetHandle(), &registration) != 0)
        {
            VirtioVsockLog.EpollFailed(_logger, errno);
            return false;
        }

        _slots[slot] = connection;
        _open++;
        Rearm(connection);
        return true;
    }

    // Arm the socket (one-shot) for what the connection can do next.
    private void Rearm(VsockConnection connection)
    {
        uint wanted = 0;
        switch (connection.State)
        {
            case VsockConnectionState.AwaitingConnectLine:
                wanted = Readable | ReadHangUp;
                break;
            case VsockConnectionState.Established or VsockConnectionState.Closing:
                if (connection.WantsHostData && !connection.HostReadable)
                {
                    wanted |= Readable | ReadHangUp;
                }

                if (connection.BufferedCount > 0)
                {
                    wanted |= Writable;
                }

                break;
        }

        if (wanted == connection.ArmedEvents)
        {
            return;
        }

        var registration = new epoll_event { events = unchecked((int)(wanted | OneShot)) };
        registration.data.u64 = connection.Token;
        if (epoll_ctl((int)_epoll.DangerousGetHandle(), EPOLL_CTL_MOD, (int)connection.Socket.DangerousGetHandle(), &registration) != 0)
        {
            VirtioVsockLog.EpollFailed(_logger, errno);
            Close(connection, resetGuest: true);
            return;
        }

        connection.ArmedEvents = wanted;
    }

    // Forget the connection and close its host socket; with resetGuest, the guest gets RST (if it knows the connection).
    private void Close(VsockConnection connection, bool resetGuest)
    {
        int slot = (int)(uint)connection.Token - 1;
        if (slot < 0 || slot >= _slots.Length || _slots[slot] != connection)
        {
            return;
        }

        _slots[slot] = null;
        _open--;
        var key = Key(connection.HostPort, connection.GuestPort);
        if (connection.State != VsockConnectionState.AwaitingConnectLine && _byPorts.TryGetValue(key, out var known) && known == connection)
        {
            _byPorts.Remove(key);
            bool guestKnows = connection.State != VsockConnectionState.AwaitingGuestResponse || (connection.Pending & VsockPendingPacket.Request) == 0;
            if (resetGuest && guestKnows && _activation is not null && _orphanResets.Count < _maxOrphanResets)
            {
                _orphanResets.Enqueue((connection.HostPort, connection.GuestPort));
            }
        }

        var ignored = new epoll_event();
        epoll_ctl((int)_epoll.DangerousGetHandle(), EPOLL_CTL_DEL, (int)connection.Socket.DangerousGetHandle(), &ignored);
        connection.Socket.Dispose();
        connection.ReleaseBuffer();
        connection.Pending = VsockPendingPacket.None;
    }

    private void CloseAll()
    {
        foreach (var connection in _slots)
        {
            if (connection is not null)
            {
                Close(connection, resetGuest: false);
            }
        }

        _ready.Clear();
        _orphanResets.Clear();
    }

    private bool IsOpen(VsockConnection connection)
    {
        int slot = (int)(uint)connection.Token - 1;
        return slot >= 0 && slot < _slots.Length && _slots[slot] == connection;
    }

    private void Enqueue(VsockConnection connection)
    {
        if (!connection.Queued)
        {
            connection.Queued = true;
            _ready.Enqueue(connection);
        }
    }

    private static bool HasWorkForGuest(VsockConnection connection)
        => connection.Pending != VsockPendingPacket.None || (connection.HostReadable && connection.WantsHostData);

    // ---- guest to host: the transmit queue --------------------------------------------------------

    // Under _gate.
    private string? ServeTransmit()
    {
        var queue = _queues[TransmitQueue]!;
        var memory = _activation!.Memory;
        Span<byte> raw = stackalloc byte[virtio_vsock_hdr.Size];
        bool used = false;
        while (true)
        {
            var result = queue.Pop(_txChain);
            if (result == VirtqueuePopResult.Empty)
            {
                break;
            }

            if (result == VirtqueuePopResult.Broken)
            {
                return queue.Failure!.ToString();
            }

            if (_txChain.ReadableLength < virtio_vsock_hdr.Size || !_txChain.TryReadReadable(memory, 0, raw))
            {
                return queue.MarkBroken(VirtqueueErrorKind.OutsideGuestMemory,
                    $"transmit chain {_txChain.HeadIndex} has {_txChain.ReadableLength} readable bytes, less than a {virtio_vsock_hdr.Size}-byte packet header").ToString();
            }

            var header = MemoryMarshal.Read<virtio_vsock_hdr>(raw);
            if (header.len > _txChain.ReadableLength - virtio_vsock_hdr.Size)
            {
                return queue.MarkBroken(VirtqueueErrorKind.LengthOverflow,
                    $"transmit chain {_txChain.HeadIndex}: packet length {header.len} exceeds the {_txChain.ReadableLength - virtio_vsock_hdr.Size} bytes after its header").ToString();
            }

            if (HandleGuestPacket(header, _txChain, memory) is { } failure)
            {
                return failure;
            }

            if (!queue.TryPushUsed(_txChain.HeadIndex, 0))
            {
                return queue.Failure!.ToString();
            }

            used = true;
        }

        return used ? Notify(queue) : null;
    }

    private string? HandleGuestPacket(in virtio_vsock_hdr header, DescriptorChain chain, IGuestMemory memory)
    {
        var op = (VirtioVsockOp)header.op;
        if (header.dst_cid != HostCid || header.src_cid != _spec.Cid || header.type != (ushort)VirtioVsockType.VIRTIO_VSOCK_TYPE_STREAM)
        {
            if (op != VirtioVsockOp.VIRTIO_VSOCK_OP_RST)
            {
                ResetOrphan(header.dst_port, header.src_port);
            }

            return null;
        }

        if (!_byPorts.TryGetValue(Key(header.dst_port, header.src_port), out var connection))
        {
            if (op == VirtioVsockOp.VIRTIO_VSOCK_OP_REQUEST)
            {
                GuestConnect(header);
            }
            else if (op != VirtioVsockOp.VIRTIO_VSOCK_OP_RST)
            {
                ResetOrphan(header.dst_port, header.src_port);
            }

            return null;
        }

        connection.UpdatePeerCredit(header.buf_alloc, header.fwd_cnt);
        switch (op)
        {
            case VirtioVsockOp.VIRTIO_VSOCK_OP_RESPONSE
                when connection.State == VsockConnectionState.AwaitingGuestResponse && (connection.Pending & VsockPendingPacket.Request) == 0:
                if (!SendOk(connection))
                {
                    Close(connection, resetGuest: true);
                    return null;
                }

                connection.State = VsockConnectionState.Established;
                break;
            case VirtioVsockOp.VIRTIO_VSOCK_OP_RST:
                Close(connection, resetGuest: false);
                return null;
            case VirtioVsockOp.VIRTIO_VSOCK_OP_SHUTDOWN when connection.State is VsockConnectionState.Established or VsockConnectionState.Closing:
                var flags = (VirtioVsockShutdown)header.flags;
                connection.GuestReceiveShutdown |= (flags & VirtioVsockShutdown.VIRTIO_VSOCK_SHUTDOWN_RCV) != 0;
                connection.GuestSendShutdown |= (flags & VirtioVsockShutdown.VIRTIO_VSOCK_SHUTDOWN_SEND) != 0;
                if (connection.GuestReceiveShutdown && connection.GuestSendShutdown)
                {
                    connection.State = VsockConnectionState.Closing;
                    connection.HostReadable = false;
                }

                if (!AfterGuestShutdown(connection))
                {
                    return null;
                }

                break;
            case VirtioVsockOp.VIRTIO_VSOCK_OP_RW when connection.State == VsockConnectionState.Established && !connection.GuestSendShutdown:
                if (!ForwardToHost(connection, chain, memory, header.len))
                {
                    return null;
                }

                break;
            case VirtioVsockOp.VIRTIO_VSOCK_OP_CREDIT_UPDATE:
                break;
            case VirtioVsockOp.VIRTIO_VSOCK_OP_CREDIT_REQUEST:
                connection.Pending |= VsockPendingPacket.CreditUpdate;
                break;
            default:
                // A request for a connection that exists, data on one that is not established, an unknown op.
                Close(connection, resetGuest: true);
                return null;
        }

        if (HasWorkForGuest(connection))
        {
            Enqueue(connection);
        }

        Rearm(connection);
        return null;
    }

    private void ResetOrphan(uint hostPort, uint guestPort)
    {
        if (_orphanResets.Count < _maxOrphanResets)
        {
            _orphanResets.Enqueue((hostPort, guestPort));
        }
    }

    private void GuestConnect(in virtio_vsock_hdr header)
    {
        string path = $"{_spec.SocketPath}_{header.dst_port}";
        var socket = VsockSocketPath.TryConnect(path, out int error);
        if (socket is null)
        {
            VirtioVsockLog.GuestConnectRefused(_logger, header.dst_port, path, error);
            ResetOrphan(header.dst_port, header.src_port);
            return;
        }

        var connection = new VsockConnection(socket, header.dst_port, header.src_port, VsockConnectionState.Established, _bufferBytes);
        connection.UpdatePeerCredit(header.buf_alloc, header.fwd_cnt);
        connection.Pending |= VsockPendingPacket.Response;
        if (!TryAdd(connection))
        {
            socket.Dispose();
            ResetOrphan(header.dst_port, header.src_port);
            return;
        }

        _byPorts[Key(connection.HostPort, connection.GuestPort)] = connection;
        Enqueue(connection);
    }

    // "OK <hostport>\n" to the host client; a fresh unix socket takes these few bytes at once.
    private static bool SendOk(VsockConnection connection)
    {
        Span<byte> reply = stackalloc byte[16];
        "OK "u8.CopyTo(reply);
        Utf8Formatter.TryFormat(connection.HostPort, reply[3..], out int digits);
        reply[3 + digits] = (byte)'\n';
        int length = digits + 4;
        fixed (byte* p = reply)
        {
            return send((int)connection.Socket.DangerousGetHandle(), p, (size_t)length, MSG_NOSIGNAL | MSG_DONTWAIT) == length;
        }
    }

    // An RW packet's payload to the host socket: straight from guest memory while nothing is held,
    // the rest into the connection's buffer (within the credit we gave). False when the connection is gone.
    private bool ForwardToHost(VsockConnection connection, DescriptorChain chain, IGuestMemory memory, uint length)
    {
        if (!connection.FitsOurCredit(length))
        {
            VirtioVsockLog.CreditViolated(_logger, length, connection.HostPort, connection.GuestPort);
            Close(connection, resetGuest: true);
            return false;
        }

        uint done = 0;
        if (connection.BufferedCount == 0)
        {
            int fd = (int)connection.Socket.DangerousGetHandle();
            ulong skip = virtio_vsock_hdr.Size;
            foreach (var segment in chain.Readable)
            {
                if (done == length)
                {
                    break;
                }

                if (skip >= segment.Length)
                {
                    skip -= segment.Length;
                    continue;
                }

                uint piece = (uint)Math.Min(segment.Length - skip, length - done);
                uint wanted = piece;
                var address = new GuestAddress(segment.Address.Value + skip);
                skip = 0;
                nint sent;
                if (memory.TryGetHostAddress(address, piece, forWrite: false, out nint host))
                {
                    sent = (nint)send(fd, (void*)host, (size_t)piece, MSG_NOSIGNAL | MSG_DONTWAIT);
                }
                else
                {
                    piece = Math.Min(piece, (uint)_bounce.Length);
                    if (!memory.TryRead(address, _bounce.AsSpan(0, (int)piece)))
                    {
                        break; // the copy below reports it
                    }

                    fixed (byte* p = _bounce)
                    {
                        sent = (nint)send(fd, p, (size_t)piece, MSG_NOSIGNAL | MSG_DONTWAIT);
                    }
                }

                if (sent < 0)
                {
                    if (IsTransient(errno))
                    {
                        break;
                    }

                    Close(connection, resetGuest: true); // the host peer is gone (EPIPE, ECONNRESET)
                    return false;
                }

                done += (uint)sent;
                if ((uint)sent < wanted)
                {
                    break; // the rest of the packet, in order, goes through the buffer
                }
            }

            Forwarded(connection, done);
        }

        if (done < length)
        {
            int rest = (int)(length - done);
            var first = connection.ReserveBuffered(rest, out var second);
            if (!chain.TryReadReadable(memory, virtio_vsock_hdr.Size + done, first)
                || (second.Length > 0 && !chain.TryReadReadable(memory, virtio_vsock_hdr.Size + done + (ulong)first.Length, second)))
            {
                Close(connection, resetGuest: true);
                return false;
            }
        }

        return true;
    }

    // ---- host to guest: the receive queue ---------------------------------------------------------

    // Under _gate. Packets for the guest while it has receive buffers: resets of unknown connections
    // first, then the connections with something to say, round-robin, one packet each per turn.
    private string? FlushReceive()
    {
        if (_queues[ReceiveQueue] is not { } queue || _activation is not { } activation)
        {
            return null;
        }

        bool used = false;
        while (_orphanResets.Count > 0 || _ready.Count > 0)
        {
            if (!_rxHeld)
            {
                var result = queue.Pop(_rxChain);
                if (result == VirtqueuePopResult.Empty)
                {
                    break;
                }

                if (result == VirtqueuePopResult.Broken)
                {
                    return queue.Failure!.ToString();
                }

                if (_rxChain.WritableLength < virtio_vsock_hdr.Size)
                {
                    return queue.MarkBroken(VirtqueueErrorKind.OutsideGuestMemory,
                        $"receive chain {_rxChain.HeadIndex} has {_rxChain.WritableLength} writable bytes, less than a {virtio_vsock_hdr.Size}-byte packet header").ToString();
                }

                _rxHeld = true;
            }

            string? failure;
            if (_orphanResets.TryDequeue(out var orphan))
            {
                var header = Header(orphan.HostPort, orphan.GuestPort, VirtioVsockOp.VIRTIO_VSOCK_OP_RST);
                failure = Deliver(queue, activation.Memory, header);
            }
            else
            {
                var connection = _ready.Dequeue();
                connection.Queued = false;
                if (!IsOpen(connection))
                {
                    continue;
                }

                failure = ServeOne(connection, queue, activation.Memory);
                if (IsOpen(connection))
                {
                    if (HasWorkForGuest(connection))
                    {
                        Enqueue(connection);
                    }

                    Rearm(connection);
                }
            }

            if (failure is not null)
            {
                return failure;
            }

            used |= !_rxHeld;
        }

        return used ? Notify(queue) : null;
    }

    // One packet of the connection's into the held receive chain (or none, leaving the chain held).
    private string? ServeOne(VsockConnection connection, SplitVirtqueue queue, IGuestMemory memory)
    {
        var pending = connection.Pending;
        if ((pending & VsockPendingPacket.Request) != 0)
        {
            connection.Pending &= ~VsockPendingPacket.Request;
            return Deliver(queue, memory, Header(connection, VirtioVsockOp.VIRTIO_VSOCK_OP_REQUEST));
        }

        if ((pending & VsockPendingPacket.Response) != 0)
        {
            connection.Pending &= ~VsockPendingPacket.Response;
            return Deliver(queue, memory, Header(connection, VirtioVsockOp.VIRTIO_VSOCK_OP_RESPONSE));
        }

        if (connection.HostReadable && connection.WantsHostData)
        {
            var received = ReceiveFromHost(connection, memory, out uint length, out int error, out bool failed);
            if (failed)
            {
                return queue.MarkBroken(VirtqueueErrorKind.OutsideGuestMemory, $"receive chain {_rxChain.HeadIndex} cannot be written").ToString();
            }

            if (received > 0)
            {
                connection.CountSent(length);
                if (connection.PeerCredit == 0 && !connection.CreditRequested)
                {
                    // Out of credit: ask, in case the guest's own updates are not coming.
                    connection.CreditRequested = true;
                    connection.Pending |= VsockPendingPacket.CreditRequest;
                }

                var header = Header(connection, VirtioVsockOp.VIRTIO_VSOCK_OP_RW);
                header.len = length;
                return Deliver(queue, memory, header);
            }

            if (received == 0)
            {
                connection.HostEof = true;
                connection.HostReadable = false;
                connection.Pending |= VsockPendingPacket.Shutdown;
                connection.ShutdownToSend = VirtioVsockShutdown.VIRTIO_VSOCK_SHUTDOWN_SEND
                    | (connection.HostHungUp ? VirtioVsockShutdown.VIRTIO_VSOCK_SHUTDOWN_RCV : VirtioVsockShutdown.None);
            }
            else if (IsTransient(error))
            {
                connection.HostReadable = false;
            }
            else
            {
                Close(connection, resetGuest: true);
                return null;
            }
        }

        pending = connection.Pending;
        if ((pending & VsockPendingPacket.Shutdown) != 0)
        {
            connection.Pending &= ~VsockPendingPacket.Shutdown;
            var header = Header(connection, VirtioVsockOp.VIRTIO_VSOCK_OP_SHUTDOWN);
            header.flags = (uint)connection.ShutdownToSend;
            return Deliver(queue, memory, header);
        }

        if ((pending & VsockPendingPacket.CreditRequest) != 0)
        {
            connection.Pending &= ~VsockPendingPacket.CreditRequest;
            return Deliver(queue, memory, Header(connection, VirtioVsockOp.VIRTIO_VSOCK_OP_CREDIT_REQUEST));
        }

        if ((pending & VsockPendingPacket.CreditUpdate) != 0)
        {
            return Deliver(queue, memory, Header(connection, VirtioVsockOp.VIRTIO_VSOCK_OP_CREDIT_UPDATE));
        }

        return null;
    }

    // Host bytes into the held chain's payload area (after the header): straight from the socket into
    // guest memory where it has a host address. Returns recv's result (0: EOF; -1: see error).
    private nint ReceiveFromHost(VsockConnection connection, IGuestMemory memory, out uint length, out int error, out bool failed)
    {
        length = 0;
        error = 0;
        failed = false;
        uint budget = Math.Min(Math.Min(connection.PeerCredit, _rxChain.WritableLength - virtio_vsock_hdr.Size), MaxPayloadPerPacket);
        if (budget == 0)
        {
            // Room for the header only: the chain still serves control packets.
            error = EAGAIN;
            return -1;
        }

        // The first contiguous piece of the payload area.
        ulong skip = virtio_vsock_hdr.Size;
        var address = default(GuestAddress);
        uint piece = 0;
        foreach (var segment in _rxChain.Writable)
        {
            if (skip >= segment.Length)
            {
                skip -= segment.Length;
                continue;
            }

            address = new GuestAddress(segment.Address.Value + skip);
            piece = (uint)Math.Min(segment.Length - skip, budget);
            break;
        }

        int fd = (int)connection.Socket.DangerousGetHandle();
        nint received;
        if (memory.TryGetHostAddress(address, piece, forWrite: true, out nint host))
        {
            received = (nint)recv(fd, (void*)host, (size_t)piece, MSG_DONTWAIT);
            error = received < 0 ? errno : 0;
            if (received > 0)
            {
                memory.CommitWrite(address, (ulong)received);
            }
        }
        else
        {
            fixed (byte* p = _bounce)
            {
                received = (nint)recv(fd, p, (size_t)piece, MSG_DONTWAIT);
                error = received < 0 ? errno : 0;
            }

            if (received > 0 && !memory.TryWrite(address, _bounce.AsSpan(0, (int)received)))
            {
                failed = true;
            }
        }

        if (received > 0)
        {
            length = (uint)received;
        }

        return received;
    }

    private virtio_vsock_hdr Header(VsockConnection connection, VirtioVsockOp op)
    {
        var header = Header(connection.HostPort, connection.GuestPort, op);
        connection.Advertise(out header.buf_alloc, out header.fwd_cnt);
        return header;
    }

    private virtio_vsock_hdr Header(uint hostPort, uint guestPort, VirtioVsockOp op) => new()
    {
        src_cid = HostCid,
        dst_cid = _spec.Cid,
        src_port = hostPort,
        dst_port = guestPort,
        type = (ushort)VirtioVsockType.VIRTIO_VSOCK_TYPE_STREAM,
        op = (ushort)op,
    };

    // The header into the held chain, which goes back to the driver with the payload already written.
    private string? Deliver(SplitVirtqueue queue, IGuestMemory memory, virtio_vsock_hdr header)
    {
        var bytes = MemoryMarshal.AsBytes(MemoryMarshal.CreateReadOnlySpan(ref header, 1));
        if (!_rxChain.TryWriteWritable(memory, 0, bytes))
        {
            return queue.MarkBroken(VirtqueueErrorKind.OutsideGuestMemory, $"receive chain {_rxChain.HeadIndex} cannot be written").ToString();
        }

        _rxHeld = false;
        return queue.TryPushUsed(_rxChain.HeadIndex, virtio_vsock_hdr.Size + header.len) ? null : queue.Failure!.ToString();
    }

    // ---- events -----------------------------------------------------------------------------------

    // Under _gate.
    private string? FlushEvents()
    {
        if (!_transportResetPending || _queues[EventQueue] is not { } queue || _activation is not { } activation)
        {
            return null;
        }

        var result = queue.Pop(_eventChain);
        if (result == VirtqueuePopResult.Empty)
        {
            return null; // sent when the driver posts a buffer
        }

        if (result == VirtqueuePopResult.Broken)
        {
            return queue.Failure!.ToString();
        }

        Span<byte> raw = stackalloc byte[virtio_vsock_event.Size];
        MemoryMarshal.Write(raw, (uint)VirtioVsockEventId.VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
        if (!_eventChain.TryWriteWritable(activation.Memory, 0, raw))
        {
            return queue.MarkBroken(VirtqueueErrorKind.OutsideGuestMemory, $"event chain {_eventChain.HeadIndex} cannot take a {virtio_vsock_event.Size}-byte event").ToString();
        }

        if (!queue.TryPushUsed(_eventChain.HeadIndex, virtio_vsock_event.Size))
        {
            return queue.Failure!.ToString();
        }

        _transportResetPending = false;
        return Notify(queue);
    }

    // Under _gate.
    private string? Notify(SplitVirtqueue queue)
    {
        if (queue.ShouldNotify())
        {
            _activation!.Interrupt.NotifyQueue(queue.Index);
        }

        return queue.Failure?.ToString();
    }

    private void ReportNeedsReset(VirtioActivation activation, string reason)
    {
        lock (_gate)
        {
            if (_needsResetReported || _activation != activation)
            {
                return;
            }

            _needsResetReported = true;
            CloseAll();
        }

        VirtioVsockLog.NeedsReset(_logger, reason);
        activation.Transport.MarkNeedsReset(reason);
    }
}
