using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using Xunit;

namespace KvmSharp.Tests.Unit.PageTracking;

/// <summary>
/// The notifier list and the counts are copy-on-write snapshots: vCPU threads trapping writes never
/// block on, crash on, or see torn state from a thread that keeps registering and unregistering
/// notifiers and tracking and untracking other gfns of the same slot.
/// </summary>
public sealed class TrackingConcurrencyTests : IDisposable
{
    private const ulong SlotGpa = 0x10_0000;
    private const ulong SlotPages = 64;      // gfns 0x100..0x13f
    private const int MutatorIterations = 4000;
    private const int RegisterEvery = 4;     // 1000 registrations, as many unregistrations
    private static readonly TimeSpan TimeCap = TimeSpan.FromSeconds(10);

    private readonly TrackingRig _rig = new();
    private readonly RamSlot _ram;

    public TrackingConcurrencyTests() => _ram = _rig.AddSlot(1, SlotGpa, SlotPages);

    public void Dispose() => _rig.Dispose();

    private static ulong VcpuGfn(int vcpu) => 0x100 + (7UL * (ulong)vcpu);
    private static ulong VcpuGpa(int vcpu) => (VcpuGfn(vcpu) << Memslot.PageShift) + 0x10;
    private static ulong VcpuValue(int vcpu, long seq) => ((ulong)vcpu << 56) | (ulong)seq;
    private static uint ChurnValue(ulong gfn) => (uint)gfn ^ 0xa5a5_0000;

    /// <summary>Checks every write it hears against what the writer can only have written; optionally tracks vCPU sequences.</summary>
    private sealed class CheckingNotifier(int vcpus, bool permanent, ConcurrentQueue<string> failures) : IPageTrackNotifier
    {
        public readonly long[] LastSeq = new long[vcpus];
        public readonly long[] Reports = new long[vcpus];
        public long ChurnReports;

        public void TrackWrite(ulong gpa, ReadOnlySpan<byte> bytes)
        {
            int vcpu = PageTrackContext.CurrentVcpuId;
            if (vcpu < 0 || vcpu >= LastSeq.Length)
            {
                failures.Enqueue($"TrackWrite with CurrentVcpuId {vcpu}");
                return;
            }
            if (gpa == VcpuGpa(vcpu))
            {
                ulong value = bytes.Length == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(bytes) : 0;
                if (value >> 56 != (ulong)vcpu) failures.Enqueue($"vCPU {vcpu} reported foreign bytes {Convert.ToHexString(bytes)}");
                long seq = (long)(value & 0x00ff_ffff_ffff_ffff);
                if (permanent && seq != LastSeq[vcpu] + 1) failures.Enqueue($"vCPU {vcpu}: write {seq} reported after {LastSeq[vcpu]}");
                LastSeq[vcpu] = seq;
                Interlocked.Increment(ref Reports[vcpu]);
                return;
            }
            ulong gfn = gpa >> Memslot.PageShift;
            if (bytes.Length != 4 || BinaryPrimitives.ReadUInt32LittleEndian(bytes) != ChurnValue(gfn) || (gpa & 0xfff) != 0x20)
                failures.Enqueue($"vCPU {vcpu} reported gpa 0x{gpa:x} bytes {Convert.ToHexString(bytes)}");
            Interlocked.Increment(ref ChurnReports);
        }

        public void TrackRemoveRegion(ulong gfn, ulong pageCount) => failures.Enqueue($"unexpected TrackRemoveRegion({gfn:x}, {pageCount})");
    }

    [Fact]
    public void Trapped_writes_stay_exact_while_notifiers_and_tracking_churn()
    {
        int vcpus = Math.Clamp(Environment.ProcessorCount - 1, 2, 4);
        var failures = new ConcurrentQueue<string>();
        var permanent = new CheckingNotifier(vcpus, permanent: true, failures);
        _rig.Tracker.Register(permanent);
        for (int v = 0; v < vcpus; v++) _rig.Tracker.AddGfn(VcpuGfn(v));
        var vcpuGfns = Enumerable.Range(0, vcpus).Select(VcpuGfn).ToHashSet();
        var churnGfns = Enumerable.Range(0x100, (int)SlotPages).Select(g => (ulong)g).Where(g => !vcpuGfns.Contains(g)).ToArray();

        var clock = Stopwatch.StartNew();
        int mutatorDone = 0;
        var writes = new long[vcpus];
        using var started = new CountdownEvent(vcpus);
        var threads = new Thread[vcpus];
        for (int t = 0; t < vcpus; t++)
        {
            int vcpu = t;
            threads[t] = new Thread(() =>
            {
                started.Signal();
                var data = new byte[8];
                var churn = new byte[4];
                long seq = 0;
                try
                {
                    while (Volatile.Read(ref mutatorDone) == 0 && failures.IsEmpty && clock.Elapsed < TimeCap)
                    {
                        BinaryPrimitives.WriteUInt64LittleEndian(data, VcpuValue(vcpu, ++seq));
                        if (!_rig.Tracker.HandleTrappedAccess(vcpu, 0, VcpuGpa(vcpu), data, isWrite: true))
                            failures.Enqueue($"vCPU {vcpu}: its RAM page was not handled");
                        if (Volatile.Read(ref permanent.LastSeq[vcpu]) != seq)
                            failures.Enqueue($"vCPU {vcpu}: write {seq} was not reported exactly once before the access returned");
                        writes[vcpu] = seq;

                        ulong gfn = churnGfns[(int)((seq * 7 + vcpu) % churnGfns.Length)];
                        BinaryPrimitives.WriteUInt32LittleEndian(churn, ChurnValue(gfn));
                        if (!_rig.Tracker.HandleTrappedAccess(vcpu, 0, (gfn << Memslot.PageShift) + 0x20, churn, isWrite: true))
                            failures.Enqueue($"vCPU {vcpu}: churn gfn 0x{gfn:x} was not handled");
                    }
                }
                catch (Exception e)
                {
                    failures.Enqueue($"vCPU {vcpu}: {e}");
                }
            }) { IsBackground = true, Name = $"fake-vcpu-{vcpu}" };
            threads[t].Start();
        }
        Assert.True(started.Wait(TimeCap));

        var expected = churnGfns.ToDictionary(g => g, _ => 0);
        var transient = new Queue<CheckingNotifier>();
        var random = new Random(12345);
        long transientRegistrations = 0;
        try
        {
            for (int i = 0; i < MutatorIterations && failures.IsEmpty && clock.Elapsed < TimeCap; i++)
            {
                ulong gfn = churnGfns[random.Next(churnGfns.Length)];
                if (expected[gfn] > 0 && random.Next(2) == 0)
                {
                    _rig.Tracker.RemoveGfn(gfn);
                    expected[gfn]--;
                }
                else
                {
                    _rig.Tracker.AddGfn(gfn);
                    expected[gfn]++;
                }
                if (i % RegisterEvery == 0)
                {
                    var notifier = new CheckingNotifier(vcpus, permanent: false, failures);
                    _rig.Tracker.Register(notifier);
                    transient.Enqueue(notifier);
                    transientRegistrations++;
                    if (transient.Count > 2) _rig.Tracker.Unregister(transient.Dequeue());
                }
            }
        }
        catch (Exception e)
        {
            failures.Enqueue($"mutator: {e}");
        }
        finally
        {
            Volatile.Write(ref mutatorDone, 1);
        }
        foreach (var thread in threads) Assert.True(thread.Join(TimeCap), "a vCPU thread did not finish");

        Assert.Empty(failures);
        Assert.True(clock.Elapsed < TimeCap, $"took {clock.Elapsed}");
        Assert.Equal(MutatorIterations / RegisterEvery, transientRegistrations);
        Assert.Equal(1 + transient.Count, _rig.Tracker.NotifierCount);
        Assert.Equal(0, _rig.Tracker.NotifierFaults);
        for (int v = 0; v < vcpus; v++)
        {
            Assert.True(writes[v] > 0, $"vCPU {v} never ran alongside the mutator");
            Assert.Equal(writes[v], permanent.Reports[v]);
            Assert.Equal(1, _rig.Tracker.Count(VcpuGfn(v)));
        }
        Assert.True(permanent.ChurnReports > 0, "no churn write ever hit a tracked gfn: the churn path was not exercised");

        // Counts match the operations performed, and the kernel layout matches the counts.
        foreach (var (gfn, count) in expected) Assert.Equal(count, _rig.Tracker.Count(gfn));
        var tracked = expected.Where(p => p.Value > 0).Select(p => p.Key).Concat(vcpuGfns).Order().ToList();
        Assert.Equal(tracked, _rig.Tracker.TrackedGfns[1].Order());
        var layout = KernelSlotLayout.Compute(_ram.Slot, tracked).Select(p => (p.GuestPhysAddr, p.Size, p.HostAddress, p.Flags));
        Assert.Equal(layout, _rig.Kernel.SlotsByGpa(0).Select(s => (s.Gpa, s.Size, s.Hva, s.Flags)));
        Assert.Equal(_rig.Kernel.SlotsByGpa(0).Select(s => s.Slot), _rig.Carved.PiecesOf(1).Select(p => p.PackedSlot));
    }
}
