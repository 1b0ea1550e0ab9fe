using System.Text;
using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.PageTracking;

namespace KvmSharp.Vmm.Trackers.Remote;

/// <summary>
/// One connected tracker: a page-track notifier whose hooks append to its event ring (and, in
/// synchronous mode, wait for its ack), and the thread answering its socket requests. The tracker's own
/// write-track counts are remembered, so a disconnect takes back exactly what it added.
/// </summary>
internal sealed class RemoteTrackerSession : IPageTrackNotifier
{
    private const string DeadlineMissed = "it did not ack an event within its deadline";

    private readonly RemoteTrackerServer _server;
    private readonly TrackerSocket _socket;
    private readonly PageTracker _tracker;
    private readonly Dictionary<ulong, int> _counts = new();
    private readonly object _countsGate = new();
    private TrackerEventRing? _ring;
    private int _detaching;
    private volatile string? _detachReason;
    private Thread? _thread;

    public RemoteTrackerSession(RemoteTrackerServer server, TrackerSocket socket, PageTracker tracker, int pid)
    {
        _server = server;
        _socket = socket;
        _tracker = tracker;
        Name = $"tracker pid {pid}";
    }

    public string Name { get; }

    /// <summary>Whether it subscribed (only then is it a notifier, attached and detached).</summary>
    public bool Subscribed => _ring is not null;

    public void Start()
    {
        _thread = new Thread(Run) { IsBackground = true, Name = Name };
        _thread.Start();
    }

    public void Join(TimeSpan timeout) => _thread?.Join(timeout);

    // ---- hooks (vCPU threads) -------------------------------------------------------------

    public void TrackWrite(ulong gpa, ReadOnlySpan<byte> bytes)
    {
        var ring = _ring;
        if (ring is null) return;
        int vcpu = PageTrackContext.CurrentVcpuId;
        ushort source = vcpu == PageTracker.DeviceWriter ? TrackerRingLayout.SourceDevice : TrackerRingLayout.SourceVcpu;
        if (!ring.Append(TrackerRingLayout.KindWrite, vcpu, PageTrackContext.CurrentAddressSpace, source, gpa, 0, bytes)) BeginDetach(DeadlineMissed);
    }

    public void TrackRemoveRegion(ulong gfn, ulong pageCount)
    {
        lock (_countsGate)
            foreach (ulong tracked in _counts.Keys.Where(g => g >= gfn && g - gfn < pageCount).ToList()) _counts.Remove(tracked);
        var ring = _ring;
        if (ring is null) return;
        if (!ring.Append(TrackerRingLayout.KindRemoveRegion, -1, 0, TrackerRingLayout.SourceVcpu, gfn, pageCount, default)) BeginDetach(DeadlineMissed);
    }

    /// <summary>Detach from any thread: waiters stop waiting at once; the session thread does the rest (unregister, counts, report).</summary>
    public void BeginDetach(string reason)
    {
        if (Interlocked.CompareExchange(ref _detaching, 1, 0) != 0) return;
        _detachReason = reason;
        _ring?.Abandon();
        _socket.ShutdownReading();
    }

    // ---- the session thread -------------------------------------------------------------

    private void Run()
    {
        string reason = "it disconnected";
        try
        {
            var table = GuestMemoryTable.Of(_server.Machine);
            _socket.Send(TrackerWire.Hello, 0, table.Encode(), table.Fds.ToArray());
            while (Volatile.Read(ref _detaching) == 0)
            {
                var ring = _ring;
                var (readable, acked) = _socket.Wait(ring is { Synchronous: false } ? (int)ring.Acks.DangerousGetHandle() : -1, 1000);
                if (acked)
                {
                    ring!.Acks.TryConsume(out _);
                    ring.FlushGap();
                }
                if (!readable) continue;
                if (!_socket.TryReceive(out uint type, out ulong id, out byte[] payload, out int[] fds)) break;
                foreach (int fd in fds) Tmds.Linux.LibC.close(fd); // a tracker sends none
                Handle(type, id, payload);
            }
        }
        catch (Exception e)
        {
            // Whatever a tracker sends, the VMM goes on: it is detached with the reason.
            reason = $"its connection failed: {e.GetType().Name}: {e.Message}";
        }
        finally
        {
            if (_detachReason is { } why) reason = why;
            Interlocked.Exchange(ref _detaching, 1);
            Cleanup(reason);
        }
    }

    private void Handle(uint type, ulong id, byte[] payload)
    {
        switch (type)
        {
            case TrackerWire.Subscribe:
                HandleSubscribe(id, payload);
                break;
            case TrackerWire.AddGfns:
            case TrackerWire.RemoveGfns:
                HandleGfns(type == TrackerWire.AddGfns, id, payload);
                break;
            default:
                Reply(id, Errno.EINVAL, $"unknown message type {type} (SUBSCRIBE 2, ADD_GFNS 3, REMOVE_GFNS 4)");
                break;
        }
    }

    private void HandleSubscribe(ulong id, byte[] payload)
    {
        if (_ring is not null)
        {
            Reply(id, EALREADY, "already subscribed");
            return;
        }
        if (payload.Length < 16)
        {
            Reply(id, Errno.EINVAL, $"SUBSCRIBE has {payload.Length} bytes, needs 16 ({{u32 mode, u32 deadline_ms, u32 ring_bytes, u32 flags}})");
            return;
        }
        uint mode = BitConverter.ToUInt32(payload), deadlineMs = BitConverter.ToUInt32(payload, 4), ringBytes = BitConverter.ToUInt32(payload, 8);
        if (mode is not (TrackerWire.Asynchronous or TrackerWire.Synchronous))
        {
            Reply(id, Errno.EINVAL, $"mode {mode}: give 0 (asynchronous) or 1 (synchronous)");
            return;
        }
        if (deadlineMs == 0) deadlineMs = TrackerWire.DefaultDeadlineMilliseconds;
        if (ringBytes == 0) ringBytes = TrackerWire.DefaultRingBytes;
        if (deadlineMs > TrackerWire.MaxDeadlineMilliseconds)
        {
            Reply(id, Errno.EINVAL, $"deadline {deadlineMs} ms is above {TrackerWire.MaxDeadlineMilliseconds} ms");
            return;
        }
        if (!System.Numerics.BitOperations.IsPow2(ringBytes) || ringBytes < TrackerWire.MinRingBytes || ringBytes > TrackerWire.MaxRingBytes)
        {
            Reply(id, Errno.EINVAL, $"ring_bytes {ringBytes} must be a power of two from {TrackerWire.MinRingBytes} to {TrackerWire.MaxRingBytes}");
            return;
        }
        var ring = new TrackerEventRing(mode == TrackerWire.Synchronous, ringBytes, TimeSpan.FromMilliseconds(deadlineMs), _server.Options.AckSpin);
        _ring = ring;
        _tracker.Register(this);
        Reply(id, 0, mode == TrackerWire.Synchronous ? $"synchronous, deadline {deadlineMs} ms" : "asynchronous", [ring.MemoryFd, (int)ring.Doorbell.DangerousGetHandle(), (int)ring.Acks.DangerousGetHandle()]);
        _server.OnAttached(this, mode == TrackerWire.Synchronous ? $"{Name}, synchronous, deadline {deadlineMs} ms" : $"{Name}, asynchronous");
    }

    private void HandleGfns(bool add, ulong id, byte[] payload)
    {
        if (_ring is null)
        {
            Reply(id, Errno.EINVAL, "SUBSCRIBE first: a tracked write needs somewhere to go");
            return;
        }
        if (payload.Length < 8)
        {
            Reply(id, Errno.EINVAL, "ADD_GFNS/REMOVE_GFNS needs {u32 mode, u32 range count} and the ranges");
            return;
        }
        uint mode = BitConverter.ToUInt32(payload), count = BitConverter.ToUInt32(payload, 4);
        if (count == 0 || count > TrackerWire.MaxRanges || payload.Length != 8 + count * TrackerWire.RangeBytes)
        {
            Reply(id, Errno.EINVAL, $"{count} ranges in {payload.Length} bytes: give 1 to {TrackerWire.MaxRanges} ranges of {{u64 first gfn, u64 pages}}");
            return;
        }
        if (add && mode > TrackerWire.TrapAccesses)
        {
            Reply(id, Errno.EINVAL, $"mode {mode}: give 0 (default), 1 (trap writes) or 2 (trap accesses)");
            return;
        }
        var gfns = new List<ulong>();
        for (int i = 0; i < count; i++)
        {
            ulong first = BitConverter.ToUInt64(payload, 8 + i * TrackerWire.RangeBytes), pages = BitConverter.ToUInt64(payload, 16 + i * TrackerWire.RangeBytes);
            if (pages == 0 || first + pages < first || (ulong)gfns.Count + pages > MaxGfnsPerRequest)
            {
                Reply(id, Errno.EINVAL, $"range {i} (gfn 0x{first:x} + {pages}) is empty, wraps, or brings the request above {MaxGfnsPerRequest} gfns");
                return;
            }
            for (ulong g = 0; g < pages; g++) gfns.Add(first + g);
        }
        try
        {
            if (add)
            {
                TrackingMode? trackingMode = mode switch { TrackerWire.TrapWrites => TrackingMode.TrapWrites, TrackerWire.TrapAccesses => TrackingMode.TrapAccesses, _ => null };
                _tracker.AddGfns(gfns, trackingMode);
                lock (_countsGate)
                    foreach (ulong gfn in gfns) _counts[gfn] = _counts.GetValueOrDefault(gfn) + 1;
            }
            else
            {
                // A tracker takes back only what it added: another tracker's count is not its to drop.
                lock (_countsGate)
                {
                    var wanted = gfns.GroupBy(g => g).FirstOrDefault(g => _counts.GetValueOrDefault(g.Key) < g.Count());
                    if (wanted is not null)
                    {
                        Reply(id, Errno.ERANGE, $"gfn 0x{wanted.Key:x} is tracked {_counts.GetValueOrDefault(wanted.Key)} time(s) by this tracker: removing it {wanted.Count()} time(s) would underflow");
                        return;
                    }
                }
                _tracker.RemoveGfns(gfns);
                lock (_countsGate)
                    foreach (ulong gfn in gfns)
                        if (_counts.GetValueOrDefault(gfn) <= 1) _counts.Remove(gfn);
                        else _counts[gfn]--;
            }
            Reply(id, 0, $"{(add ? "added" : "removed")} {gfns.Count} gfn(s)");
        }
        catch (KvmException e)
        {
            Reply(id, e.Errno, e.Message);
        }
    }

    private const ulong MaxGfnsPerRequest = 1UL << 24;
    private const int EALREADY = 114, ETIMEDOUT = 110;

    private void Reply(ulong id, int error, string detail, int[]? fds = null)
    {
        byte[] text = Encoding.UTF8.GetBytes(detail);
        var payload = new byte[8 + text.Length];
        BitConverter.TryWriteBytes(payload, error);
        BitConverter.TryWriteBytes(payload.AsSpan(4), (uint)text.Length);
        text.CopyTo(payload, 8);
        _socket.Send(TrackerWire.Reply, id, payload, fds ?? []);
    }

    private void Cleanup(string reason)
    {
        var ring = _ring;
        ring?.Abandon();
        long lost = ring?.Lost ?? 0;
        if (lost > 0) reason += $" ({lost} events lost to a full ring)";
        if (ring is not null)
        {
            try
            {
                // The grace period: when this returns no hook of this tracker runs or will start.
                _tracker.Unregister(this);
            }
            catch (Exception e) when (e is KvmException or ArgumentException or ObjectDisposedException)
            {
                _server.Log?.Invoke($"{Name}: unregister failed: {e.Message}");
            }
        }
        List<ulong> held;
        lock (_countsGate)
        {
            held = _counts.SelectMany(p => Enumerable.Repeat(p.Key, p.Value)).ToList();
            _counts.Clear();
        }
        if (held.Count > 0) TakeBack(held);
        if (!reason.StartsWith("it disconnected", StringComparison.Ordinal))
        {
            try
            {
                byte[] text = Encoding.UTF8.GetBytes(reason);
                var payload = new byte[8 + text.Length];
                BitConverter.TryWriteBytes(payload, reason.StartsWith(DeadlineMissed, StringComparison.Ordinal) ? ETIMEDOUT : 0);
                BitConverter.TryWriteBytes(payload.AsSpan(4), (uint)text.Length);
                text.CopyTo(payload, 8);
                _socket.Send(TrackerWire.Detached, 0, payload);
            }
            catch (Exception e) when (e is KvmException or IOException)
            {
                // It went away first.
            }
        }
        _socket.Dispose();
        ring?.Dispose();
        _server.OnDetached(this, reason);
    }

    private void TakeBack(List<ulong> held)
    {
        try
        {
            _tracker.RemoveGfns(held);
        }
        catch (KvmException)
        {
            // Some went with a deleted memslot meanwhile: take back the rest one by one.
            foreach (ulong gfn in held)
            {
                try { _tracker.RemoveGfn(gfn); }
                catch (KvmException) { }
            }
        }
    }
}
