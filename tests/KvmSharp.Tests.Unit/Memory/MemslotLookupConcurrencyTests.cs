using System.Collections.Concurrent;
using System.Diagnostics;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using Xunit;
using Xunit.Abstractions;

namespace KvmSharp.Tests.Unit.Memory;

/// <summary>
/// Lock-free lookups while a writer keeps changing the table: readers (vCPU threads) must always find
/// the slots that never change, and never see a torn or foreign result for the ones that do.
/// </summary>
public sealed class MemslotLookupConcurrencyTests(ITestOutputHelper output)
{
    private const ulong Page = 0x1000;
    private const ulong BlockPages = 0x100;
    private const ulong Hva = 0x7f00_0000_0000;
    private const int PermanentCount = 16;  // ids 0..15 at even blocks 0, 2, .., 30
    private const int ChurnCount = 7;       // ids 100..106 alternate between odd blocks 1..13 and 15..27
    private const ushort ChurnBaseId = 100;
    private const ulong NeverUsedBlock = 29;
    private const int CyclesPerChurnSlot = 1000; // create, move, dirty logging on, delete
    private static readonly TimeSpan TimeCap = TimeSpan.FromSeconds(5);

    private static ulong BlockGpa(ulong block) => block * BlockPages * Page;

    private static Memslot Permanent(int i) => new((ushort)i, 0, BlockGpa(2UL * (ulong)i), BlockPages * Page, Hva + ((ulong)i * BlockPages * Page), 0);

    private static ulong ChurnHva(int k) => Hva + 0x1_0000_0000 + ((ulong)k * BlockPages * Page);

    private static ulong HomeA(int k) => 1 + (2UL * (ulong)k);

    private static ulong HomeB(int k) => 1 + (2UL * (ulong)(k + ChurnCount));

    // SMM covers all 32 blocks with one slot whose id collides with permanent slot 0.
    private static readonly Memslot Smm = new(0, 1, 0, 32 * BlockPages * Page, Hva + 0x2_0000_0000, 0);

    [Fact]
    public void Readers_never_miss_a_permanent_slot_nor_see_a_torn_one_while_a_writer_churns()
    {
        var kernel = new FakeMemslotBackend();
        var table = new MemslotTable(new MemslotLimits { AddressSpaces = 2, SmmSupported = true }, kernel);
        for (int i = 0; i < PermanentCount; i++)
        {
            var p = Permanent(i);
            table.Apply(new MemslotRequest(p.PackedSlot, 0, p.GuestPhysAddr, p.Size, p.HostAddress));
        }
        table.Apply(new MemslotRequest(Smm.PackedSlot, 0, Smm.GuestPhysAddr, Smm.Size, Smm.HostAddress));
        long firstGeneration = table.Current.Generation; // the writer's change n publishes firstGeneration + n + 1

        var failures = new ConcurrentQueue<string>();
        var clock = Stopwatch.StartNew();
        int writerDone = 0;
        int readerCount = Math.Clamp(Environment.ProcessorCount - 1, 2, 4);
        using var readersStarted = new CountdownEvent(readerCount);
        var lookups = new long[readerCount];
        var lookupsWhileWriting = new long[readerCount];

        var readers = new Thread[readerCount];
        for (int r = 0; r < readerCount; r++)
        {
            int reader = r;
            readers[r] = new Thread(() =>
            {
                readersStarted.Signal();
                long lastGeneration = -1;
                uint iteration = (uint)reader * 7919;
                while (failures.IsEmpty && clock.Elapsed < TimeCap)
                {
                    bool writing = Volatile.Read(ref writerDone) == 0;
                    var snapshot = table.Current;
                    if (snapshot.Generation < lastGeneration)
                    {
                        failures.Enqueue($"generation went back from {lastGeneration} to {snapshot.Generation}");
                        break;
                    }
                    lastGeneration = snapshot.Generation;
                    string? failure = CheckOneSnapshot(snapshot, snapshot.Generation - firstGeneration, iteration++);
                    if (failure is not null)
                    {
                        failures.Enqueue($"reader {reader}, generation {snapshot.Generation}: {failure}");
                        break;
                    }
                    lookups[reader]++;
                    if (writing) lookupsWhileWriting[reader]++;
                    if (!writing) break; // one full pass after the writer finished, on its final snapshot
                }
            }) { IsBackground = true, Name = $"memslot reader {r}" };
            readers[r].Start();
        }

        Assert.True(readersStarted.Wait(TimeSpan.FromSeconds(5)), "readers did not start");
        int completedOps = 0;
        var writer = new Thread(() =>
        {
            try
            {
                for (int n = 0; n < ChurnCount * 4 * CyclesPerChurnSlot && failures.IsEmpty && clock.Elapsed < TimeCap; n++)
                {
                    ChurnOnce(table, n);
                    completedOps++;
                }
            }
            catch (Exception e)
            {
                failures.Enqueue($"writer: {e}");
            }
            finally
            {
                Volatile.Write(ref writerDone, 1);
            }
        }) { IsBackground = true, Name = "memslot writer" };
        writer.Start();

        Assert.True(writer.Join(TimeCap + TimeSpan.FromSeconds(5)), "writer did not finish");
        foreach (var reader in readers) Assert.True(reader.Join(TimeCap + TimeSpan.FromSeconds(5)), "reader did not finish");

        output.WriteLine($"{completedOps} changes in {clock.Elapsed.TotalMilliseconds:F0} ms; snapshot checks per reader: {string.Join(", ", lookups)} ({string.Join(", ", lookupsWhileWriting)} while writing)");
        Assert.True(failures.IsEmpty, string.Join(Environment.NewLine, failures));
        Assert.True(completedOps >= ChurnCount * 4, $"the writer completed only {completedOps} changes");
        Assert.All(lookupsWhileWriting, n => Assert.True(n > 0, "a reader never ran while the writer was changing slots"));
        Assert.Equal(kernel.KernelState(), table.Current.AllSlots()
            .Select(s => (s.PackedSlot, s.Flags, s.GuestPhysAddr, s.Size, s.HostAddress))
            .OrderBy(s => s.PackedSlot)
            .ToList());
    }

    // Churn slot k = n % 7 goes through create at home A, move to home B, dirty logging on, delete.
    private static void ChurnOnce(MemslotTable table, int n)
    {
        int k = n % ChurnCount;
        ushort id = (ushort)(ChurnBaseId + k);
        ulong size = BlockPages * Page;
        (MemslotRequest request, MemslotChangeKind expected) = ((n / ChurnCount) % 4) switch
        {
            0 => (MemslotRequest.Create(id, BlockGpa(HomeA(k)), size, ChurnHva(k)), MemslotChangeKind.Create),
            1 => (MemslotRequest.Create(id, BlockGpa(HomeB(k)), size, ChurnHva(k)), MemslotChangeKind.Move),
            2 => (MemslotRequest.Create(id, BlockGpa(HomeB(k)), size, ChurnHva(k), KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES), MemslotChangeKind.FlagsOnly),
            _ => (MemslotRequest.Delete(id), MemslotChangeKind.Delete),
        };
        var verdict = table.Apply(request);
        if (verdict.Kind != expected) throw new InvalidOperationException($"op {n}: expected {expected}, got {verdict.Kind}");
    }

    // Null when everything this snapshot says is consistent; otherwise what was wrong.
    private static string? CheckOneSnapshot(MemslotSnapshot snapshot, long changesApplied, uint iteration)
    {
        if (changesApplied < 0 || changesApplied > ChurnCount * 4 * CyclesPerChurnSlot)
            return $"generation {snapshot.Generation} is outside the writer's schedule";

        ulong inside = iteration % BlockPages;
        for (int i = 0; i < PermanentCount; i++)
        {
            var expected = Permanent(i);
            foreach (ulong gfn in (ReadOnlySpan<ulong>)[expected.BaseGfn, expected.EndGfn - 1, expected.BaseGfn + inside])
            {
                if (!snapshot.TryFindByGfn(0, gfn, out var found)) return $"permanent slot {i} missing at gfn 0x{gfn:x}";
                if (found != expected) return $"gfn 0x{gfn:x} gave {found}, expected {expected}";
            }
        }

        // The writer's schedule is fixed, so the generation says exactly where every churn slot must be.
        for (int k = 0; k < ChurnCount; k++)
        {
            long changesToK = changesApplied > k ? ((changesApplied - 1 - k) / ChurnCount) + 1 : 0;
            Memslot? expected = (changesToK % 4) switch
            {
                1 => ChurnSlot(k, HomeA(k), 0),
                2 => ChurnSlot(k, HomeB(k), 0),
                3 => ChurnSlot(k, HomeB(k), KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES),
                _ => null,
            };
            foreach (ulong gfn in (ReadOnlySpan<ulong>)[(HomeA(k) * BlockPages) + inside, (HomeB(k) * BlockPages) + BlockPages - 1 - inside])
            {
                bool found = snapshot.TryFindByGfn(0, gfn, out var slot);
                bool shouldFind = expected is { } e && e.ContainsGfn(gfn);
                if (found != shouldFind || (found && slot != expected))
                    return $"gfn 0x{gfn:x} gave {(found ? slot.ToString() : "nothing")}, expected {(shouldFind ? expected.ToString() : "nothing")} after {changesApplied} changes";
            }
        }

        ulong unused = (NeverUsedBlock * BlockPages) + inside;
        if (snapshot.TryFindByGfn(0, unused, out var ghost)) return $"never-used gfn 0x{unused:x} gave {ghost}";

        ulong smmGfn = (iteration * 37UL) % (32 * BlockPages);
        if (!snapshot.TryFindByGfn(1, smmGfn, out var smm)) return $"SMM slot missing at gfn 0x{smmGfn:x}";
        if (smm != Smm) return $"SMM gfn 0x{smmGfn:x} gave {smm}";
        return null;
    }

    private static Memslot ChurnSlot(int k, ulong block, uint flags) =>
        new((ushort)(ChurnBaseId + k), 0, BlockGpa(block), BlockPages * Page, ChurnHva(k), flags);
}
