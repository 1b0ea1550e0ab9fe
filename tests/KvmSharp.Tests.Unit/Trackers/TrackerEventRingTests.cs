using System.Diagnostics;
using KvmSharp.Vmm.Trackers.Remote;
using Xunit;
using static KvmSharp.Vmm.Trackers.Remote.TrackerRingLayout;

namespace KvmSharp.Tests.Unit.Trackers;

/// <summary>The event ring's producer logic (a memfd and two eventfds, no KVM), read back as a tracker reads it.</summary>
public sealed unsafe class TrackerEventRingTests
{
    // The ring as a tracker maps it: a second mapping of the same memfd.
    private sealed class Reader(TrackerEventRing ring) : IDisposable
    {
        private readonly SharedMemfd _map = SharedMemfd.Map(Tmds.Linux.LibC.dup(ring.MemoryFd), HeaderBytes + TrackerWire.MinRingBytes, "test reader");
        private ulong _tail;

        public List<(uint Kind, ulong Seq, ulong Gpa, ulong Aux, byte[] Bytes)> Drain(bool ack = true)
        {
            var records = new List<(uint, ulong, ulong, ulong, byte[])>();
            byte* header = _map.Pointer, data = header + HeaderBytes;
            ulong size = *(ulong*)(header + DataBytesOffset);
            ulong head = Volatile.Read(ref *(ulong*)(header + HeadOffset));
            while (_tail != head)
            {
                byte* r = data + (_tail & (size - 1));
                uint kind = *(uint*)(r + RecordKind);
                if (kind != KindPad)
                {
                    records.Add((kind, *(ulong*)(r + RecordSeq), *(ulong*)(r + RecordGpa), *(ulong*)(r + RecordAux), new ReadOnlySpan<byte>(r + RecordHeaderBytes, (int)*(uint*)(r + RecordLength)).ToArray()));
                    if (ack) *(ulong*)(header + AckedSeqOffset) = *(ulong*)(r + RecordSeq);
                }
                _tail += *(uint*)(r + RecordSize);
            }
            Volatile.Write(ref *(ulong*)(header + TailOffset), _tail);
            return records;
        }

        public void Dispose() => _map.Dispose();
    }

    [Fact]
    public void An_asynchronous_ring_that_fills_counts_what_it_drops_and_says_so_in_a_gap_record_before_the_next_event()
    {
        using var ring = new TrackerEventRing(synchronous: false, TrackerWire.MinRingBytes, TimeSpan.FromSeconds(1), TimeSpan.Zero);
        using var reader = new Reader(ring);
        int fits = (int)(TrackerWire.MinRingBytes / RecordSizeFor(8));
        for (ulong i = 0; i < (ulong)fits + 10; i++)
            Assert.True(ring.Append(KindWrite, 0, 0, SourceVcpu, 0x1000 + i, 0, BitConverter.GetBytes(i)));
        Assert.Equal(10, ring.Lost);
        var first = reader.Drain();
        Assert.Equal(fits, first.Count);
        Assert.Equal(Enumerable.Range(1, fits).Select(i => (ulong)i), first.Select(r => r.Seq));
        Assert.True(ring.Append(KindWrite, 0, 0, SourceVcpu, 0x9999, 0, [1, 2, 3]));
        var next = reader.Drain();
        Assert.Equal(2, next.Count);
        Assert.Equal((KindGap, (ulong)fits + 1, 0UL, 10UL), (next[0].Kind, next[0].Seq, next[0].Gpa, next[0].Aux));
        Assert.Equal((KindWrite, (ulong)fits + 2, 0x9999UL), (next[1].Kind, next[1].Seq, next[1].Gpa));
        Assert.Equal(new byte[] { 1, 2, 3 }, next[1].Bytes);
    }

    [Fact]
    public void Records_never_wrap_the_end_of_the_ring_and_keep_their_bytes()
    {
        using var ring = new TrackerEventRing(synchronous: false, TrackerWire.MinRingBytes, TimeSpan.FromSeconds(1), TimeSpan.Zero);
        using var reader = new Reader(ring);
        var sent = new List<byte[]>();
        for (int round = 0; round < 40; round++)
        {
            for (int i = 0; i < 30; i++)
            {
                var bytes = Enumerable.Range(0, 1 + (round * 31 + i) % 200).Select(b => (byte)(b ^ round)).ToArray();
                sent.Add(bytes);
                Assert.True(ring.Append(KindWrite, 1, 0, SourceDevice, (ulong)sent.Count, 0, bytes));
            }
            var got = reader.Drain();
            Assert.Equal(sent.Skip(sent.Count - 30), got.Select(r => r.Bytes));
        }
        Assert.Equal(0, ring.Lost);
    }

    [Fact]
    public void A_synchronous_append_nobody_acks_gives_up_at_the_deadline_and_one_that_is_acked_returns_true()
    {
        using var ring = new TrackerEventRing(synchronous: true, TrackerWire.MinRingBytes, TimeSpan.FromMilliseconds(200), TimeSpan.FromMicroseconds(50));
        var clock = Stopwatch.StartNew();
        Assert.False(ring.Append(KindWrite, 0, 0, SourceVcpu, 0x1000, 0, [1]));
        Assert.InRange(clock.ElapsedMilliseconds, 150, 10_000);

        using var reader = new Reader(ring);
        reader.Drain();
        bool stop = false;
        var tracker = new Thread(() =>
        {
            while (!Volatile.Read(ref stop))
            {
                reader.Drain();
                ring.Acks.Signal();
                Thread.Sleep(1);
            }
        });
        tracker.Start();
        Assert.True(ring.Append(KindWrite, 0, 0, SourceVcpu, 0x2000, 0, [2]));
        Volatile.Write(ref stop, true);
        tracker.Join();
    }

    [Fact]
    public void Abandoning_a_synchronous_ring_releases_a_waiting_writer_at_once()
    {
        using var ring = new TrackerEventRing(synchronous: true, TrackerWire.MinRingBytes, TimeSpan.FromSeconds(30), TimeSpan.Zero);
        var clock = Stopwatch.StartNew();
        bool returned = false;
        var writer = new Thread(() => returned = ring.Append(KindWrite, 0, 0, SourceVcpu, 0x1000, 0, [1]));
        writer.Start();
        Thread.Sleep(50);
        ring.Abandon();
        Assert.True(writer.Join(TimeSpan.FromSeconds(10)));
        Assert.True(returned);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10));
    }
}
