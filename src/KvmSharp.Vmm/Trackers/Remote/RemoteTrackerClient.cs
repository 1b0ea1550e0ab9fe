using System.Diagnostics;
using System.Text;
using KvmSharp.Devices.Events;
using Tmds.Linux;
using static KvmSharp.Vmm.Trackers.Remote.TrackerRingLayout;
using static Tmds.Linux.LibC;

namespace KvmSharp.Vmm.Trackers.Remote;

/// <summary>
/// The tracker's end of the protocol (what `kvmsharp track` runs): connect, map guest memory, subscribe,
/// add and remove gfns, then read events from the ring and ack them.
/// </summary>
public sealed unsafe class RemoteTrackerClient : IDisposable
{
    private readonly TrackerSocket _socket;
    private readonly List<SharedMemfd> _memory = new();
    private readonly GuestMemoryTableEntry[] _table;
    private SharedMemfd? _ring;
    private int _doorbell = -1, _acks = -1;
    private ulong _nextId = 1;

    private RemoteTrackerClient(TrackerSocket socket, GuestMemoryTableEntry[] table)
    {
        _socket = socket;
        _table = table;
    }

    public IReadOnlyList<GuestMemoryTableEntry> Table => _table;

    /// <summary>Connect and take the guest memory table (and map its memfds).</summary>
    public static RemoteTrackerClient Connect(string path)
    {
        var socket = TrackerSocket.Connect(path);
        try
        {
            if (!socket.TryReceive(out uint type, out _, out byte[] payload, out int[] fds))
                throw new IOException($"{path}: the VMM closed the connection before its HELLO");
            if (type == TrackerWire.Detached) throw new IOException($"{path}: refused: {ReplyText(payload)}");
            if (type != TrackerWire.Hello) throw new InvalidDataException($"{path}: expected HELLO (1), got message type {type}");
            var (version, _, entries, fdCount) = GuestMemoryTable.Decode(payload);
            if (version != TrackerWire.Version) throw new InvalidDataException($"{path}: protocol version {version}, this tracker speaks {TrackerWire.Version}");
            if (fds.Length != fdCount) throw new InvalidDataException($"{path}: HELLO announced {fdCount} memfds, {fds.Length} came");
            var client = new RemoteTrackerClient(socket, entries);
            for (int i = 0; i < fds.Length; i++)
            {
                long size = lseek(fds[i], 0, SEEK_END);
                client._memory.Add(SharedMemfd.Map(fds[i], (ulong)size, $"guest memfd {i}"));
            }
            return client;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Read guest memory through the shared memfds (address space 0 unless given).</summary>
    public bool TryRead(ulong gpa, Span<byte> destination, int addressSpace = 0)
    {
        foreach (var e in _table)
        {
            if (e.AddressSpace != addressSpace || gpa < e.Gpa || gpa - e.Gpa + (ulong)destination.Length > e.Size) continue;
            new ReadOnlySpan<byte>(_memory[e.FdIndex].Pointer + e.FdOffset + (gpa - e.Gpa), destination.Length).CopyTo(destination);
            return true;
        }
        return false;
    }

    /// <summary>SUBSCRIBE; 0 or the errno, with the VMM's words.</summary>
    public (int Errno, string Detail) Subscribe(bool synchronous, uint deadlineMilliseconds = 0, uint ringBytes = 0)
    {
        var payload = new byte[16];
        BitConverter.TryWriteBytes(payload, synchronous ? TrackerWire.Synchronous : TrackerWire.Asynchronous);
        BitConverter.TryWriteBytes(payload.AsSpan(4), deadlineMilliseconds);
        BitConverter.TryWriteBytes(payload.AsSpan(8), ringBytes);
        var (error, detail, fds) = Request(TrackerWire.Subscribe, payload);
        if (error != 0) return (error, detail);
        if (fds.Length != 3) throw new InvalidDataException($"SUBSCRIBE's reply carried {fds.Length} descriptors, expected 3 (ring, doorbell, acks)");
        long size = lseek(fds[0], 0, SEEK_END);
        _ring = SharedMemfd.Map(fds[0], (ulong)size, "tracker ring");
        if (*(ulong*)(_ring.Pointer + MagicOffset) != Magic) throw new InvalidDataException("the event ring has a wrong magic number");
        (_doorbell, _acks) = (fds[1], fds[2]);
        return (0, detail);
    }

    /// <summary>ADD_GFNS over ranges {first gfn, pages}; mode as <see cref="TrackerWire.DefaultMode"/>...</summary>
    public (int Errno, string Detail) AddGfns(IReadOnlyList<(ulong FirstGfn, ulong Pages)> ranges, uint mode = TrackerWire.DefaultMode) =>
        Ranges(TrackerWire.AddGfns, ranges, mode);

    public (int Errno, string Detail) RemoveGfns(IReadOnlyList<(ulong FirstGfn, ulong Pages)> ranges) => Ranges(TrackerWire.RemoveGfns, ranges, 0);

    private (int, string) Ranges(uint type, IReadOnlyList<(ulong FirstGfn, ulong Pages)> ranges, uint mode)
    {
        var payload = new byte[8 + ranges.Count * TrackerWire.RangeBytes];
        BitConverter.TryWriteBytes(payload, mode);
        BitConverter.TryWriteBytes(payload.AsSpan(4), (uint)ranges.Count);
        for (int i = 0; i < ranges.Count; i++)
        {
            BitConverter.TryWriteBytes(payload.AsSpan(8 + i * 16), ranges[i].FirstGfn);
            BitConverter.TryWriteBytes(payload.AsSpan(16 + i * 16), ranges[i].Pages);
        }
        var (error, detail, _) = Request(type, payload);
        return (error, detail);
    }

    private (int Errno, string Detail, int[] Fds) Request(uint type, byte[] payload)
    {
        ulong id = _nextId++;
        _socket.Send(type, id, payload);
        if (!_socket.TryReceive(out uint replyType, out ulong replyId, out byte[] reply, out int[] fds))
            throw new IOException("the VMM closed the connection");
        if (replyType == TrackerWire.Detached) throw new IOException($"detached by the VMM: {ReplyText(reply)}");
        if (replyType != TrackerWire.Reply || replyId != id) throw new InvalidDataException($"expected the REPLY to request {id}, got type {replyType} id {replyId}");
        return (BitConverter.ToInt32(reply), ReplyText(reply), fds);
    }

    private static string ReplyText(byte[] reply) =>
        reply.Length >= 8 ? Encoding.UTF8.GetString(reply, 8, (int)Math.Min(BitConverter.ToUInt32(reply, 4), (uint)(reply.Length - 8))) : "";

    /// <summary>
    /// Read events until the VMM closes the connection (or <paramref name="stop"/>), acking each after
    /// <paramref name="onEvent"/> returns. Returns why it ended (the VMM's DETACHED reason, or "disconnected").
    /// </summary>
    public string Run(Action<TrackerEvent> onEvent, CancellationToken stop = default, TimeSpan? spin = null)
    {
        var ring = _ring ?? throw new InvalidOperationException("SUBSCRIBE first");
        byte* header = ring.Pointer, data = ring.Pointer + HeaderBytes;
        ulong dataBytes = *(ulong*)(header + DataBytesOffset);
        long spinTicks = (long)((spin ?? TimeSpan.FromMicroseconds(200)).TotalSeconds * Stopwatch.Frequency);
        ulong tail = Volatile.Read(ref *(ulong*)(header + TailOffset));
        long idleSince = Stopwatch.GetTimestamp();
        while (!stop.IsCancellationRequested)
        {
            ulong head = Volatile.Read(ref *(ulong*)(header + HeadOffset));
            if (tail != head)
            {
                while (tail != head)
                {
                    byte* record = data + (tail & (dataBytes - 1));
                    uint kind = *(uint*)(record + RecordKind), size = *(uint*)(record + RecordSize);
                    if (kind != KindPad)
                    {
                        int length = (int)*(uint*)(record + RecordLength);
                        var e = new TrackerEvent(kind, *(ulong*)(record + RecordSeq), *(int*)(record + RecordVcpu), *(ushort*)(record + RecordAddressSpace),
                            *(ushort*)(record + RecordSource), *(ulong*)(record + RecordGpa), *(ulong*)(record + RecordAux),
                            new ReadOnlySpan<byte>(record + RecordHeaderBytes, length).ToArray());
                        onEvent(e);
                        tail += size;
                        Volatile.Write(ref *(ulong*)(header + TailOffset), tail);
                        Volatile.Write(ref *(ulong*)(header + AckedSeqOffset), e.Seq);
                        Acknowledge(header);
                    }
                    else
                    {
                        tail += size;
                        Volatile.Write(ref *(ulong*)(header + TailOffset), tail);
                    }
                }
                idleSince = Stopwatch.GetTimestamp();
                continue;
            }
            if (Stopwatch.GetTimestamp() - idleSince < spinTicks)
            {
                Thread.SpinWait(16);
                continue;
            }
            // Sleep on the doorbell (and the socket, which says when the VMM is done with us).
            Volatile.Write(ref *(int*)(header + ConsumerSleepingOffset), 1);
            Interlocked.MemoryBarrier();
            if (Volatile.Read(ref *(ulong*)(header + HeadOffset)) == tail)
            {
                var (socketReady, _) = _socket.Wait(_doorbell, 200);
                if (socketReady)
                {
                    Volatile.Write(ref *(int*)(header + ConsumerSleepingOffset), 0);
                    if (!_socket.TryReceive(out uint type, out _, out byte[] payload, out int[] fds)) return "disconnected";
                    foreach (int fd in fds) close(fd);
                    if (type == TrackerWire.Detached)
                    {
                        DrainRemaining(onEvent, ref tail);
                        return ReplyText(payload);
                    }
                }
                ulong count;
                read(_doorbell, &count, sizeof(ulong));
            }
            Volatile.Write(ref *(int*)(header + ConsumerSleepingOffset), 0);
            idleSince = Stopwatch.GetTimestamp();
        }
        return "stopped";
    }

    // Records published before the VMM said goodbye still count (they happened).
    private void DrainRemaining(Action<TrackerEvent> onEvent, ref ulong tail)
    {
        var ring = _ring!;
        byte* header = ring.Pointer, data = ring.Pointer + HeaderBytes;
        ulong dataBytes = *(ulong*)(header + DataBytesOffset);
        ulong head = Volatile.Read(ref *(ulong*)(header + HeadOffset));
        while (tail != head)
        {
            byte* record = data + (tail & (dataBytes - 1));
            uint kind = *(uint*)(record + RecordKind), size = *(uint*)(record + RecordSize);
            if (kind != KindPad)
            {
                int length = (int)*(uint*)(record + RecordLength);
                onEvent(new TrackerEvent(kind, *(ulong*)(record + RecordSeq), *(int*)(record + RecordVcpu), *(ushort*)(record + RecordAddressSpace),
                    *(ushort*)(record + RecordSource), *(ulong*)(record + RecordGpa), *(ulong*)(record + RecordAux),
                    new ReadOnlySpan<byte>(record + RecordHeaderBytes, length).ToArray()));
            }
            tail += size;
        }
    }

    private void Acknowledge(byte* header)
    {
        Interlocked.MemoryBarrier();
        if (Volatile.Read(ref *(int*)(header + ProducerWaitingOffset)) != 0 || Volatile.Read(ref *(int*)(header + GapPendingOffset)) != 0)
        {
            ulong one = 1;
            write(_acks, &one, sizeof(ulong));
        }
    }

    public void Dispose()
    {
        _socket.Dispose();
        _ring?.Dispose();
        foreach (var memory in _memory) memory.Dispose();
        if (_doorbell >= 0) close(_doorbell);
        if (_acks >= 0) close(_acks);
    }
}
