using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using KvmSharp.Devices.Events;
using Tmds.Linux;
using static KvmSharp.Vmm.Trackers.Remote.TrackerRingLayout;
using static Tmds.Linux.LibC;

namespace KvmSharp.Vmm.Trackers.Remote;

/// <summary>
/// The VMM's end of one tracker's event ring: vCPU threads (several at once) append records; in
/// synchronous mode each then waits for the tracker's ack of its record, spinning briefly and then
/// blocking on the ack eventfd, never past the deadline. Appending and waiting allocate nothing.
/// </summary>
public sealed unsafe class TrackerEventRing : IDisposable
{
    private readonly SharedMemfd _memory;
    private readonly byte* _data;
    private readonly ulong _dataBytes;
    private readonly long _deadlineTicks;
    private readonly long _spinTicks;
    private int _producerLock;
    private ulong _head;
    private ulong _seq;
    private ulong _pendingLost;
    private long _lost;
    private volatile bool _abandoned;

    public TrackerEventRing(bool synchronous, uint ringBytes, TimeSpan deadline, TimeSpan spin)
    {
        if (!BitOperations.IsPow2(ringBytes) || ringBytes < TrackerWire.MinRingBytes || ringBytes > TrackerWire.MaxRingBytes)
            throw new ArgumentOutOfRangeException(nameof(ringBytes), $"ring size {ringBytes} must be a power of two from {TrackerWire.MinRingBytes} to {TrackerWire.MaxRingBytes}");
        Synchronous = synchronous;
        Deadline = deadline;
        _dataBytes = ringBytes;
        _memory = SharedMemfd.Create("tracker-ring", (ulong)HeaderBytes + ringBytes);
        _data = _memory.Pointer + HeaderBytes;
        _deadlineTicks = (long)(deadline.TotalSeconds * Stopwatch.Frequency);
        _spinTicks = (long)(spin.TotalSeconds * Stopwatch.Frequency);
        byte* h = _memory.Pointer;
        *(ulong*)(h + MagicOffset) = Magic;
        *(uint*)(h + VersionOffset) = TrackerWire.Version;
        *(uint*)(h + HeaderBytesOffset) = HeaderBytes;
        *(ulong*)(h + DataBytesOffset) = ringBytes;
        *(uint*)(h + ModeOffset) = synchronous ? TrackerWire.Synchronous : TrackerWire.Asynchronous;
        *(uint*)(h + DeadlineOffset) = (uint)deadline.TotalMilliseconds;
        Doorbell = EventFd.Create();
        Acks = EventFd.Create();
    }

    public bool Synchronous { get; }
    public TimeSpan Deadline { get; }
    public int MemoryFd => _memory.FileDescriptor;

    /// <summary>VMM → tracker: records are ready (signalled only while the tracker says it sleeps).</summary>
    public EventFd Doorbell { get; }

    /// <summary>Tracker → VMM: records were acked (or, in asynchronous mode, a gap record is wanted).</summary>
    public EventFd Acks { get; }

    /// <summary>Events lost to a full ring (asynchronous mode), in total.</summary>
    public long Lost => Interlocked.Read(ref _lost);

    public ulong PublishedSeq => Volatile.Read(ref _seq);

    private ref ulong Tail => ref *(ulong*)(_memory.Pointer + TailOffset);
    private ref ulong AckedSeq => ref *(ulong*)(_memory.Pointer + AckedSeqOffset);
    private ref int ProducerWaiting => ref *(int*)(_memory.Pointer + ProducerWaitingOffset);

    /// <summary>Stop waiting for the tracker: every waiter returns at once, later appends are dropped.</summary>
    public void Abandon() => _abandoned = true;

    public bool Abandoned => _abandoned;

    /// <summary>
    /// Append a record and, in synchronous mode, wait for its ack. False when the tracker missed the
    /// deadline (synchronous) — the caller detaches it; asynchronous appends that do not fit are counted
    /// and reported by a gap record later, and return true.
    /// </summary>
    public bool Append(uint kind, int vcpu, int addressSpace, ushort source, ulong gpa, ulong aux, ReadOnlySpan<byte> bytes)
    {
        if (_abandoned) return true;
        int size = RecordSizeFor(bytes.Length);
        long start = Stopwatch.GetTimestamp();
        ulong seq;
        while (true)
        {
            Lock();
            if (TryAppendLocked(kind, vcpu, addressSpace, source, gpa, aux, bytes, size, out seq))
            {
                Unlock();
                break;
            }
            if (!Synchronous)
            {
                _pendingLost++;
                Volatile.Write(ref *(ulong*)(_memory.Pointer + LostOffset), (ulong)Interlocked.Increment(ref _lost));
                Volatile.Write(ref *(int*)(_memory.Pointer + GapPendingOffset), 1);
                Unlock();
                RingDoorbell();
                return true;
            }
            Unlock();
            // Synchronous and full: other vCPUs' records wait for acks; wait for room as for an ack.
            ulong tail = Volatile.Read(ref Tail);
            if (!WaitForTracker(start, (0, tail + 1))) return false;
        }
        RingDoorbell();
        if (!Synchronous) return true;
        return WaitForTracker(start, (seq, 0));
    }

    /// <summary>Write the gap record for lost events, if there are any and it fits (asynchronous mode; the session thread).</summary>
    public void FlushGap()
    {
        Lock();
        if (_pendingLost > 0)
        {
            int size = RecordSizeFor(0);
            if (TryReserve(size, out byte* record))
            {
                WriteRecord(record, KindGap, size, -1, 0, 0, 0, _pendingLost, default, out _);
                _pendingLost = 0;
                Volatile.Write(ref *(int*)(_memory.Pointer + GapPendingOffset), 0);
                Publish();
            }
        }
        Unlock();
        RingDoorbell();
    }

    private bool TryAppendLocked(uint kind, int vcpu, int addressSpace, ushort source, ulong gpa, ulong aux, ReadOnlySpan<byte> bytes, int size, out ulong seq)
    {
        seq = 0;
        if (_pendingLost > 0)
        {
            // The gap goes first, so the tracker learns of the loss where it happened.
            int gapSize = RecordSizeFor(0);
            if (Free() < (ulong)(gapSize + size) + PadAllowance(gapSize + size)) return false;
            TryReserve(gapSize, out byte* gap);
            WriteRecord(gap, KindGap, gapSize, -1, 0, 0, 0, _pendingLost, default, out _);
            _pendingLost = 0;
            Volatile.Write(ref *(int*)(_memory.Pointer + GapPendingOffset), 0);
        }
        if (!TryReserve(size, out byte* record)) return false;
        WriteRecord(record, kind, size, vcpu, addressSpace, source, gpa, aux, bytes, out seq);
        Publish();
        return true;
    }

    private ulong Free() => _dataBytes - (_head - Volatile.Read(ref Tail));

    // The most a pad record can take before a record of `size` bytes.
    private ulong PadAllowance(int size) => (ulong)size;

    private bool TryReserve(int size, out byte* record)
    {
        record = null;
        ulong offset = _head & (_dataBytes - 1);
        ulong untilEnd = _dataBytes - offset;
        ulong needed = (ulong)size + (untilEnd < (ulong)size ? untilEnd : 0);
        if (Free() < needed) return false;
        if (untilEnd < (ulong)size)
        {
            // A record never wraps: a pad record fills the end.
            *(uint*)(_data + offset + RecordKind) = KindPad;
            *(uint*)(_data + offset + RecordSize) = (uint)untilEnd;
            _head += untilEnd;
            offset = 0;
        }
        record = _data + offset;
        _head += (ulong)size;
        return true;
    }

    private void WriteRecord(byte* record, uint kind, int size, int vcpu, int addressSpace, ushort source, ulong gpa, ulong aux, ReadOnlySpan<byte> bytes, out ulong seq)
    {
        seq = ++_seq;
        *(uint*)(record + RecordKind) = kind;
        *(uint*)(record + RecordSize) = (uint)size;
        *(ulong*)(record + RecordSeq) = seq;
        *(int*)(record + RecordVcpu) = vcpu;
        *(ushort*)(record + RecordAddressSpace) = (ushort)addressSpace;
        *(ushort*)(record + RecordSource) = source;
        *(uint*)(record + RecordLength) = (uint)bytes.Length;
        *(uint*)(record + RecordLength + 4) = 0;
        *(ulong*)(record + RecordGpa) = gpa;
        *(ulong*)(record + RecordAux) = aux;
        bytes.CopyTo(new Span<byte>(record + RecordHeaderBytes, bytes.Length));
    }

    // Release the records written so far: the tracker reads head, then the records before it.
    private void Publish()
    {
        Volatile.Write(ref *(ulong*)(_memory.Pointer + PublishedSeqOffset), _seq);
        Volatile.Write(ref *(ulong*)(_memory.Pointer + HeadOffset), _head);
    }

    private void RingDoorbell()
    {
        // Dekker with the tracker's "sleeping, then recheck head": one of the two sees the other.
        Interlocked.MemoryBarrier();
        if (Volatile.Read(ref *(int*)(_memory.Pointer + ConsumerSleepingOffset)) != 0) Doorbell.Signal();
    }

    private void Lock()
    {
        while (Interlocked.CompareExchange(ref _producerLock, 1, 0) != 0) Thread.SpinWait(8);
    }

    private void Unlock() => Volatile.Write(ref _producerLock, 0);

    // Until the ack covers `seq` (seq > 0) or the tail reaches `tail` (room in a full ring).
    private bool WaitForTracker(long start, (ulong Seq, ulong Tail) until)
    {
        long deadline = start + _deadlineTicks, spinUntil = start + _spinTicks;
        while (true)
        {
            if (Reached(until)) return true;
            if (_abandoned) return true;
            long now = Stopwatch.GetTimestamp();
            if (now >= deadline) return false;
            if (now < spinUntil)
            {
                Thread.SpinWait(16);
                continue;
            }
            Interlocked.Increment(ref ProducerWaiting);
            try
            {
                if (Reached(until)) return true;
                int milliseconds = (int)Math.Clamp((deadline - now) * 1000 / Stopwatch.Frequency + 1, 1, 10);
                var wanted = new pollfd { fd = (int)Acks.DangerousGetHandle(), events = (short)POLLIN };
                poll(&wanted, 1, milliseconds);
                Acks.TryConsume(out _);
            }
            finally
            {
                Interlocked.Decrement(ref ProducerWaiting);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Reached((ulong Seq, ulong Tail) until) =>
        until.Seq > 0 ? Volatile.Read(ref AckedSeq) >= until.Seq : Volatile.Read(ref Tail) >= until.Tail;

    public void Dispose()
    {
        _abandoned = true;
        _memory.Dispose();
        Doorbell.Dispose();
        Acks.Dispose();
    }
}
