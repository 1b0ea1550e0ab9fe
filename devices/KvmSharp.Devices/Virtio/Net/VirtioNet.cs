using System.Buffers.Binary;
using System.Runtime.InteropServices;
using KvmSharp.Devices.Events;
using KvmSharp.Devices.Memory;
using KvmSharp.Devices.Virtio.Queues;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Tmds.Linux;
using static KvmSharp.Devices.Virtio.Net.VirtioNetFeatures;

namespace KvmSharp.Devices.Virtio.Net;

/// <summary>
/// virtio-net (one receive and one transmit queue, no control queue) over an <see cref="INetBackend"/>
/// (a tap). Everything runs on the event loop: the back end's descriptor readable → frames are read
/// straight into the driver's receive buffers (readv into guest RAM); a transmit kick (ioeventfd) →
/// each chain is written to the back end (writev from guest RAM). Buffers that have no host address
/// (a write-tracked page) go through a bounce buffer. Nothing is allocated per packet.
/// </summary>
/// <remarks>
/// <para>Receive with VIRTIO_NET_F_MRG_RXBUF: the device holds popped receive chains until it has room
/// for the largest frame the back end can deliver (64 KiB),
/// reads one frame across as many chains as it fills, and sets num_buffers; chains left over serve the
/// next frame. Without it, each frame goes into one chain. When the driver has too few buffers, the frame
/// waits in the bounce buffer and the back end is no longer watched until the driver adds buffers, so a
/// full ring never spins the loop.</para>
/// <para>Offloads: the guest features offered follow what the tap accepts (probed at open); at activation
/// the tap is told (TUNSETOFFLOAD) exactly which partial-checksum and GSO frames the driver negotiated.</para>
/// </remarks>
public sealed unsafe class VirtioNet : IVirtioDevice
{
    public const ushort DefaultQueueSize = 256;
    public const int ReceiveQueue = 0;
    public const int TransmitQueue = 1;

    /// <summary>The largest frame a tap delivers or takes: a 64 KiB GSO packet, its Ethernet and VLAN headers, and the vnet header.</summary>
    public const int MaxFrameBytes = virtio_net_hdr_v1.Size + 65536 + 64;

    /// <summary>Frames received per wake-up at most, so transmit kicks are not starved.</summary>
    public const int FramesPerWake = 256;

    private const int EthernetOverhead = 18; // header plus one VLAN tag

    private readonly INetBackend _backend;
    private readonly IEventLoop? _eventLoop;
    private readonly ILogger _logger;
    private readonly string _name;
    private readonly MacAddress _mac;
    private readonly Lock _gate = new();
    private readonly iovec* _vectors;
    private readonly byte[] _rxBounce = GC.AllocateArray<byte>(MaxFrameBytes, pinned: true);
    private readonly byte[] _txBounce = GC.AllocateArray<byte>(MaxFrameBytes, pinned: true);
    private readonly DescriptorChain _txChain = new();
    private readonly Action _onBackendReadable;
    private DescriptorChain[] _rxChains = [];
    private int _rxStart;
    private int _rxCount;
    private ulong _rxCapacity;
    private int _rxPendingLength;
    private int _rxNeed;
    private bool _mergeable;
    private SplitVirtqueue? _rx;
    private SplitVirtqueue? _tx;
    private VirtioActivation? _activation;
    private IDisposable? _watch;
    private bool _needsResetReported;
    private bool _disposed;

    /// <param name="backend">The tap; the device owns it and disposes it.</param>
    /// <param name="mac">The MAC the guest reads from the configuration space.</param>
    /// <param name="eventLoop">Watches the back end for received frames; null: the owner calls <see cref="PollBackend"/> (tests).</param>
    /// <param name="name">The NIC's name in messages.</param>
    public VirtioNet(INetBackend backend, MacAddress mac, IEventLoop? eventLoop, ILogger<VirtioNet>? logger = null, string? name = null, ushort queueSize = DefaultQueueSize)
    {
        ArgumentNullException.ThrowIfNull(backend);
        _backend = backend;
        _mac = mac;
        _eventLoop = eventLoop;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _name = name ?? backend.Name;
        QueueMaxSizes = [queueSize, queueSize];
        _vectors = (iovec*)NativeMemory.AllocZeroed((nuint)TunIoctls.IOV_MAX, (nuint)sizeof(iovec));
        _onBackendReadable = PollBackend;
        ulong features = VirtioFeatureBits.VIRTIO_RING_F_EVENT_IDX | VirtioFeatureBits.VIRTIO_RING_F_INDIRECT_DESC
            | VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS | VIRTIO_NET_F_MTU | VIRTIO_NET_F_MRG_RXBUF
            // The tap takes partial checksums and GSO frames from the VMM whatever its offload setting.
            | VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6 | VIRTIO_NET_F_HOST_ECN;
        uint offloads = backend.SupportedOffloads;
        if ((offloads & TunIoctls.TUN_F_CSUM) != 0)
        {
            features |= VIRTIO_NET_F_GUEST_CSUM;
            if ((offloads & TunIoctls.TUN_F_TSO4) != 0) features |= VIRTIO_NET_F_GUEST_TSO4;
            if ((offloads & TunIoctls.TUN_F_TSO6) != 0) features |= VIRTIO_NET_F_GUEST_TSO6;
            if ((offloads & TunIoctls.TUN_F_TSO_ECN) != 0) features |= VIRTIO_NET_F_GUEST_ECN;
        }

        AvailableFeatures = features;
    }

    public VirtioDeviceType DeviceType => VirtioDeviceType.Net;

    public ulong AvailableFeatures { get; }

    public IReadOnlyList<ushort> QueueMaxSizes { get; }

    public MacAddress Mac => _mac;

    /// <summary>The tap offloads (TUN_F_*) set for the driver's negotiated features.</summary>
    public uint ActiveOffloads { get; private set; }

    public long RxFrames { get; private set; }
    public long RxBytes { get; private set; }
    public long TxFrames { get; private set; }
    public long TxBytes { get; private set; }
    public long RxDropped { get; private set; }
    public long TxDropped { get; private set; }

    /// <summary>Whether the back end is watched now (false while the driver has no receive buffers).</summary>
    public bool IsWatchingBackend => _watch is not null;

    /// <summary>The tap offloads that match <paramref name="features"/> (the driver's receive features).</summary>
    public static uint OffloadsFor(ulong features)
    {
        if ((features & VIRTIO_NET_F_GUEST_CSUM) == 0) return 0;
        uint offloads = TunIoctls.TUN_F_CSUM;
        if ((features & VIRTIO_NET_F_GUEST_TSO4) != 0) offloads |= TunIoctls.TUN_F_TSO4;
        if ((features & VIRTIO_NET_F_GUEST_TSO6) != 0) offloads |= TunIoctls.TUN_F_TSO6;
        if ((features & VIRTIO_NET_F_GUEST_ECN) != 0 && (offloads & (TunIoctls.TUN_F_TSO4 | TunIoctls.TUN_F_TSO6)) != 0) offloads |= TunIoctls.TUN_F_TSO_ECN;
        return offloads;
    }

    public void ReadConfig(uint offset, Span<byte> data)
    {
        var config = default(virtio_net_config);
        for (int i = 0; i < 6; i++) config.mac[i] = _mac.Byte(i);
        config.status = VIRTIO_NET_S_LINK_UP;
        config.max_virtqueue_pairs = 1;
        config.mtu = (ushort)_backend.Mtu;
        var bytes = new ReadOnlySpan<byte>(&config, sizeof(virtio_net_config));
        data.Clear();
        if (offset < bytes.Length)
        {
            var available = bytes[(int)offset..];
            available[..Math.Min(available.Length, data.Length)].CopyTo(data);
        }
    }

    public void WriteConfig(uint offset, ReadOnlySpan<byte> data)
    {
        // The MAC is writable only with VIRTIO_NET_F_CTRL_MAC_ADDR / legacy drivers; neither is offered.
    }

    public void Activate(VirtioActivation activation)
    {
        ArgumentNullException.ThrowIfNull(activation);
        string? reset = null;
        lock (_gate)
        {
            StopLocked();
            _activation = activation;
            _needsResetReported = false;
            ulong features = activation.NegotiatedFeatures;
            _mergeable = (features & VIRTIO_NET_F_MRG_RXBUF) != 0;
            bool guestGso = (features & (VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6 | VIRTIO_NET_F_GUEST_UFO)) != 0;
            // Merged buffers: room for the largest frame a tap can deliver (an oversized frame still arrives whole).
            // One chain per frame: the driver sized its buffers for the MTU, or for 64 KiB with guest GSO.
            _rxNeed = guestGso || _mergeable ? MaxFrameBytes : Math.Min(MaxFrameBytes, virtio_net_hdr_v1.Size + _backend.Mtu + EthernetOverhead);
            _rx = SplitVirtqueue.FromActivation(activation, ReceiveQueue, "virtio-net's receive queue", out reset);
            if (reset is null) _tx = SplitVirtqueue.FromActivation(activation, TransmitQueue, "virtio-net's transmit queue", out reset);
            if (reset is null)
            {
                if (_rxChains.Length < _rx!.Size)
                {
                    _rxChains = new DescriptorChain[_rx.Size];
                    for (int i = 0; i < _rxChains.Length; i++) _rxChains[i] = new DescriptorChain();
                }

                uint offloads = OffloadsFor(features) & _backend.SupportedOffloads;
                if (_backend.TrySetOffloads(offloads, out int errno)) ActiveOffloads = offloads;
                else VirtioNetLog.OffloadFailed(_logger, _name, offloads, errno);
                VirtioNetLog.Activated(_logger, _name, _backend.Name, _mac.ToString(), features, ActiveOffloads);
                WatchLocked();
            }
        }

        if (reset is not null) ReportNeedsReset(reset);
    }

    public void QueueNotify(int queueIndex)
    {
        if (queueIndex == ReceiveQueue)
        {
            // New receive buffers: deliver what waits, and listen to the back end again.
            lock (_gate)
            {
                if (_rx is null) return;
                WatchLocked();
            }

            PollBackend();
        }
        else if (queueIndex == TransmitQueue)
        {
            Transmit();
        }
    }

    /// <summary>Receive what the back end has, as far as the driver's buffers go (the event loop's callback; tests call it directly).</summary>
    public void PollBackend()
    {
        string? reset = null;
        bool notify = false;
        VirtioActivation? activation;
        lock (_gate)
        {
            activation = _activation;
            var queue = _rx;
            if (activation is null || queue is null) return;
            int delivered = 0;
            while (delivered < FramesPerWake)
            {
                if (_rxPendingLength > 0)
                {
                    var outcome = DeliverBounce(queue, activation.Memory, out reset);
                    if (outcome == RxOutcome.Delivered) delivered++;
                    if (outcome != RxOutcome.Delivered && outcome != RxOutcome.Dropped)
                    {
                        if (outcome == RxOutcome.NoBuffers) UnwatchLocked();
                        break;
                    }

                    continue;
                }

                if (!FillReceiveChains(queue, _mergeable ? _rxNeed : 1, out reset)) break;
                if (_rxCount == 0)
                {
                    // No buffers: stop listening until the driver kicks the receive queue.
                    UnwatchLocked();
                    break;
                }

                var result = ReceiveDirect(queue, activation.Memory, out reset);
                if (result == RxOutcome.Delivered)
                {
                    delivered++;
                    continue;
                }

                if (result == RxOutcome.Dropped) continue;
                if (result != RxOutcome.NotDirect) break;

                // Too little room for the largest frame, or a buffer without a host address: read into the bounce buffer.
                nint length;
                fixed (byte* bounce = _rxBounce)
                {
                    var vector = new iovec { iov_base = bounce, iov_len = (size_t)(nuint)_rxBounce.Length };
                    length = _backend.Receive(&vector, 1);
                }

                if (length <= 0)
                {
                    if (length < 0) CountDrop(ref _rxTransferFailures, "receive", (int)-length);
                    break;
                }

                if (length > _rxBounce.Length)
                {
                    RxDropped++;
                    VirtioNetLog.Dropped(_logger, _name, (int)length, "larger than the largest frame");
                    continue;
                }

                _rxPendingLength = (int)length;
            }

            if (delivered > 0 && reset is null)
            {
                notify = queue.ShouldNotify();
                reset = queue.Failure?.ToString();
            }
        }

        if (reset is not null) ReportNeedsReset(reset);
        else if (notify) activation.Interrupt.NotifyQueue(ReceiveQueue);
    }

    public void Reset()
    {
        lock (_gate)
        {
            StopLocked();
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            StopLocked();
            _backend.Dispose();
            NativeMemory.Free(_vectors);
        }
    }

    private long _rxTransferFailures;
    private long _txTransferFailures;

    private enum RxOutcome
    {
        Delivered,
        Dropped,
        /// <summary>The back end has nothing (or failed).</summary>
        Idle,
        /// <summary>The held chains cannot take the frame without the bounce buffer.</summary>
        NotDirect,
        NoBuffers,
        Broken,
    }

    private void StopLocked()
    {
        UnwatchLocked();
        if (_activation is not null && ActiveOffloads != 0 && !_disposed)
        {
            _backend.TrySetOffloads(0, out _);
        }

        ActiveOffloads = 0;
        _activation = null;
        _rx = null;
        _tx = null;
        _rxStart = 0;
        _rxCount = 0;
        _rxCapacity = 0;
        _rxPendingLength = 0; // a frame held for the old driver is not the new one's
    }

    private void WatchLocked()
    {
        if (_watch is null && _eventLoop is not null && !_disposed) _watch = _eventLoop.Watch(_backend.Handle, _onBackendReadable);
    }

    private void UnwatchLocked()
    {
        var watch = _watch;
        _watch = null;
        watch?.Dispose();
    }

    // Pop receive chains until the held ones can take `need` bytes (or the ring is empty); false when the driver broke a rule.
    private bool FillReceiveChains(SplitVirtqueue queue, int need, out string? reset)
    {
        reset = null;
        while ((_mergeable ? _rxCapacity < (ulong)need : _rxCount < 1) && _rxCount < _rxChains.Length && _rxCount < queue.Size)
        {
            var chain = _rxChains[(_rxStart + _rxCount) % queue.Size];
            var result = queue.Pop(chain);
            if (result == VirtqueuePopResult.Empty) return true;
            if (result == VirtqueuePopResult.Broken)
            {
                reset = queue.Failure!.ToString();
                return false;
            }

            if (chain.WritableLength < virtio_net_hdr_v1.Size)
            {
                reset = queue.MarkBroken(VirtqueueErrorKind.BadRingLayout,
                    $"receive chain {chain.HeadIndex} has {chain.WritableLength} writable bytes, less than the {virtio_net_hdr_v1.Size}-byte header").ToString();
                return false;
            }

            _rxCount++;
            _rxCapacity += chain.WritableLength;
        }

        return true;
    }

    // readv straight into the held chains when they can take the largest frame and every buffer has a host address.
    private RxOutcome ReceiveDirect(SplitVirtqueue queue, IGuestMemory memory, out string? reset)
    {
        reset = null;
        int chains = _mergeable ? _rxCount : 1;
        ulong room = _mergeable ? _rxCapacity : _rxChains[_rxStart].WritableLength;
        if (room < (ulong)_rxNeed) return RxOutcome.NotDirect;
        int count = 0;
        ulong covered = 0;
        for (int c = 0; c < chains && covered < (ulong)_rxNeed; c++)
        {
            foreach (var segment in _rxChains[(_rxStart + c) % queue.Size].Writable)
            {
                if (count == TunIoctls.IOV_MAX || !memory.TryGetHostAddress(segment.Address, segment.Length, forWrite: true, out nint host)) return RxOutcome.NotDirect;
                _vectors[count++] = new iovec { iov_base = (void*)host, iov_len = segment.Length };
                covered += segment.Length;
            }
        }

        nint length = _backend.Receive(_vectors, count);
        if (length <= 0)
        {
            if (length < 0) CountDrop(ref _rxTransferFailures, "receive", (int)-length);
            return RxOutcome.Idle;
        }

        if ((ulong)length > covered)
        {
            // A tap returns a frame's whole length even when the buffers cut it short: drop it, keep the chains.
            RxDropped++;
            VirtioNetLog.Dropped(_logger, _name, (int)length, "larger than the receive buffers");
            return RxOutcome.Dropped;
        }

        return Complete(queue, memory, (int)length, fromBounce: false, out reset) ? RxOutcome.Delivered : RxOutcome.Broken;
    }

    private RxOutcome DeliverBounce(SplitVirtqueue queue, IGuestMemory memory, out string? reset)
    {
        int length = _rxPendingLength;
        if (!FillReceiveChains(queue, length, out reset)) return RxOutcome.Broken;
        if (_rxCount == 0) return RxOutcome.NoBuffers;
        if (!_mergeable && _rxChains[_rxStart].WritableLength < (uint)length)
        {
            // Without merged buffers the driver must post buffers for the largest frame; this one cannot be delivered.
            _rxPendingLength = 0;
            RxDropped++;
            VirtioNetLog.Dropped(_logger, _name, length, "larger than the receive buffer");
            return RxOutcome.Dropped;
        }

        if (_mergeable && _rxCapacity < (ulong)length)
        {
            if (_rxCount >= queue.Size)
            {
                _rxPendingLength = 0;
                RxDropped++;
                VirtioNetLog.Dropped(_logger, _name, length, "larger than the whole receive ring");
                return RxOutcome.Dropped;
            }

            return RxOutcome.NoBuffers;
        }

        _rxPendingLength = 0;
        return Complete(queue, memory, length, fromBounce: true, out reset) ? RxOutcome.Delivered : RxOutcome.Broken;
    }

    // Hand a received frame of `length` bytes (already in the held chains, or in the bounce buffer) to the driver.
    private bool Complete(SplitVirtqueue queue, IGuestMemory memory, int length, bool fromBounce, out string? reset)
    {
        reset = null;
        int used = 0;
        for (int remaining = length; remaining > 0; used++)
        {
            remaining -= (int)Math.Min((uint)remaining, _rxChains[(_rxStart + used) % queue.Size].WritableLength);
        }

        Span<byte> numBuffers = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(numBuffers, (ushort)used);
        if (fromBounce) numBuffers.CopyTo(_rxBounce.AsSpan(virtio_net_hdr_v1.NumBuffersOffset));
        int offset = 0;
        for (int c = 0; c < used; c++)
        {
            var chain = _rxChains[(_rxStart + c) % queue.Size];
            int part = (int)Math.Min((uint)(length - offset), chain.WritableLength);
            bool ok = fromBounce
                ? chain.TryWriteWritable(memory, 0, _rxBounce.AsSpan(offset, part))
                : CommitWritten(chain, memory, part) && (c != 0 || chain.TryWriteWritable(memory, virtio_net_hdr_v1.NumBuffersOffset, numBuffers));
            if (!ok)
            {
                reset = queue.MarkBroken(VirtqueueErrorKind.OutsideGuestMemory, $"receive chain {chain.HeadIndex} cannot be written").ToString();
                return false;
            }

            offset += part;
        }

        for (int c = 0; c < used; c++)
        {
            var chain = _rxChains[_rxStart];
            uint part = Math.Min((uint)length, chain.WritableLength);
            length -= (int)part;
            _rxCapacity -= chain.WritableLength;
            _rxStart = (_rxStart + 1) % queue.Size;
            _rxCount--;
            if (!queue.TryPushUsed(chain.HeadIndex, part))
            {
                reset = queue.Failure!.ToString();
                return false;
            }
        }

        RxFrames++;
        RxBytes += offset - virtio_net_hdr_v1.Size;
        return true;
    }

    // Mark the first `length` bytes of the chain's writable buffers as written through their host addresses (dirty log).
    private static bool CommitWritten(DescriptorChain chain, IGuestMemory memory, int length)
    {
        foreach (var segment in chain.Writable)
        {
            if (length <= 0) break;
            uint part = Math.Min((uint)length, segment.Length);
            memory.CommitWrite(segment.Address, part);
            length -= (int)part;
        }

        return true;
    }

    private void Transmit()
    {
        string? reset = null;
        bool notify = false;
        VirtioActivation? activation;
        lock (_gate)
        {
            activation = _activation;
            var queue = _tx;
            if (activation is null || queue is null) return;
            var memory = activation.Memory;
            while (true)
            {
                var result = queue.Pop(_txChain);
                if (result == VirtqueuePopResult.Empty) break;
                if (result == VirtqueuePopResult.Broken)
                {
                    reset = queue.Failure!.ToString();
                    break;
                }

                SendChain(_txChain, memory);
                if (!queue.TryPushUsed(_txChain.HeadIndex, 0))
                {
                    reset = queue.Failure!.ToString();
                    break;
                }
            }

            if (reset is null)
            {
                notify = queue.ShouldNotify();
                reset = queue.Failure?.ToString();
            }
        }

        if (reset is not null) ReportNeedsReset(reset);
        else if (notify) activation.Interrupt.NotifyQueue(TransmitQueue);
    }

    // One frame to the back end: writev from guest RAM, or through the bounce buffer. A frame the back end refuses is dropped (a NIC drops too).
    private void SendChain(DescriptorChain chain, IGuestMemory memory)
    {
        uint length = chain.ReadableLength;
        if (length < virtio_net_hdr_v1.Size || length > MaxFrameBytes)
        {
            TxDropped++;
            VirtioNetLog.Dropped(_logger, _name, (int)Math.Min(length, int.MaxValue), $"a transmit frame must hold the {virtio_net_hdr_v1.Size}-byte header and at most {MaxFrameBytes} bytes");
            return;
        }

        int count = 0;
        bool direct = chain.ReadableCount <= TunIoctls.IOV_MAX;
        if (direct)
        {
            foreach (var segment in chain.Readable)
            {
                if (!memory.TryGetHostAddress(segment.Address, segment.Length, forWrite: false, out nint host))
                {
                    direct = false;
                    break;
                }

                _vectors[count++] = new iovec { iov_base = (void*)host, iov_len = segment.Length };
            }
        }

        nint sent;
        if (direct)
        {
            sent = _backend.Send(_vectors, count);
        }
        else
        {
            if (!chain.TryReadReadable(memory, 0, _txBounce.AsSpan(0, (int)length)))
            {
                TxDropped++;
                return;
            }

            fixed (byte* bounce = _txBounce)
            {
                var vector = new iovec { iov_base = bounce, iov_len = length };
                sent = _backend.Send(&vector, 1);
            }
        }

        if (sent < 0)
        {
            TxDropped++;
            CountDrop(ref _txTransferFailures, "send", (int)-sent);
            return;
        }

        TxFrames++;
        TxBytes += length - virtio_net_hdr_v1.Size;
    }

    // Log the first failure of a kind and then every 1024th, so a link that is down cannot flood the log.
    private void CountDrop(ref long counter, string direction, int errno)
    {
        long count = ++counter;
        if (direction == "receive") RxDropped++;
        if (count == 1 || count % 1024 == 0) VirtioNetLog.TransferFailed(_logger, _name, direction, errno, count);
    }

    private void ReportNeedsReset(string reason)
    {
        VirtioActivation? activation;
        lock (_gate)
        {
            activation = _activation;
            if (_needsResetReported || activation is null) return;
            _needsResetReported = true;
            // A broken driver gets nothing more until it resets the device.
            UnwatchLocked();
        }

        VirtioNetLog.NeedsReset(_logger, _name, reason);
        activation.Transport.MarkNeedsReset(reason);
    }
}
