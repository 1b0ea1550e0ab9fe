using System.Diagnostics;
using System.Globalization;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;

namespace KvmSharp.Benchmarks;

/// <summary>
/// ns per <see cref="MemslotSnapshot.TryFindByGfn"/> with 1, 1,000 and 32,000 slots, over random gfns that
/// all hit a slot. The snapshots are built through <see cref="MemslotTable"/> (the kernel's rules, a fake
/// backend that accepts everything), as a VM would build them. For scale, each line also gives the cost of
/// a plain binary search over a flat sorted array of the same slots (flat_array_ns).
/// </summary>
internal static class GfnLookupBench
{
    private const int LookupTableSize = 1 << 16; // pre-drawn gfns, walked in order (no RNG in the timed loop)
    private const int LookupsPerBatch = 200_000;
    private const int Batches = 7;
    private const ulong HostBase = 0x4000_0000_0000;

    public static readonly int[] DefaultSizes = [1, 1_000, 32_000];

    public static int Run(IReadOnlyList<int> sizes)
    {
        int limit = new MemslotLimits().SlotsPerAddressSpace;
        if (sizes.FirstOrDefault(size => size > limit) is > 0 and var tooMany)
            throw new BenchException($"{tooMany} slots is more than KVM_CAP_NR_MEMSLOTS allows ({limit})");
        foreach (int size in sizes) Measure(size);
        return 0;
    }

    private static void Measure(int slotCount)
    {
        var random = new Random(12345 + slotCount);
        long buildStart = Stopwatch.GetTimestamp();
        var (snapshot, slots) = Build(slotCount, random);
        double buildMs = Stopwatch.GetElapsedTime(buildStart).TotalMilliseconds;

        var gfns = new ulong[LookupTableSize];
        for (int i = 0; i < gfns.Length; i++)
        {
            var slot = slots[random.Next(slots.Length)];
            gfns[i] = slot.BaseGfn + (ulong)random.NextInt64((long)slot.PageCount);
        }
        var flat = new FlatSlots(slots);

        // Both must find every gfn, and agree.
        foreach (ulong gfn in gfns)
        {
            if (!snapshot.TryFindByGfn(0, gfn, out var found) || !found.ContainsGfn(gfn) || flat.Find(gfn) != found.Id)
                throw new BenchException($"lookup of gfn 0x{gfn:x} with {slotCount} slots failed");
        }

        LookupSnapshot(snapshot, gfns, LookupsPerBatch); // warm-up (tiered JIT)
        LookupFlat(flat, gfns, LookupsPerBatch);
        Thread.Sleep(150);
        LookupSnapshot(snapshot, gfns, LookupsPerBatch);
        LookupFlat(flat, gfns, LookupsPerBatch);

        var snapshotNs = new double[Batches];
        var flatNs = new double[Batches];
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        for (int b = 0; b < Batches; b++)
        {
            snapshotNs[b] = LookupSnapshot(snapshot, gfns, LookupsPerBatch);
            flatNs[b] = LookupFlat(flat, gfns, LookupsPerBatch);
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"gfn_lookup slots={slotCount} ns_per_lookup={Median(snapshotNs):F1} flat_array_ns={Median(flatNs):F1} " +
            $"alloc_bytes={allocated} build_ms={buildMs:F0}"));
    }

    // Slots of 1 to 4 pages with gaps of 0 to 3 pages between them, in random id order.
    private static (MemslotSnapshot, Memslot[]) Build(int slotCount, Random random)
    {
        var table = new MemslotTable(new MemslotLimits(), new AcceptingBackend());
        var ids = Enumerable.Range(0, slotCount).ToArray();
        random.Shuffle(ids);
        ulong gfn = 0x100;
        foreach (int id in ids)
        {
            ulong pages = 1 + (ulong)random.Next(4);
            ulong gpa = gfn << Memslot.PageShift;
            table.Apply(MemslotRequest.Create((ushort)id, gpa, pages << Memslot.PageShift, HostBase + gpa));
            gfn += pages + (ulong)random.Next(4);
        }
        var snapshot = table.Current;
        if (snapshot.Count(0) != slotCount) throw new BenchException($"built {snapshot.Count(0)} slots, wanted {slotCount}");
        return (snapshot, snapshot.Slots(0).ToArray());
    }

    private static double LookupSnapshot(MemslotSnapshot snapshot, ulong[] gfns, int count)
    {
        ulong sink = 0;
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < count; i++)
        {
            snapshot.TryFindByGfn(0, gfns[i & (LookupTableSize - 1)], out var slot);
            sink += slot.Id;
        }
        long elapsed = Stopwatch.GetTimestamp() - start;
        GC.KeepAlive(sink);
        return elapsed * 1e9 / Stopwatch.Frequency / count;
    }

    private static double LookupFlat(FlatSlots flat, ulong[] gfns, int count)
    {
        ulong sink = 0;
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < count; i++) sink += (ulong)flat.Find(gfns[i & (LookupTableSize - 1)]);
        long elapsed = Stopwatch.GetTimestamp() - start;
        GC.KeepAlive(sink);
        return elapsed * 1e9 / Stopwatch.Frequency / count;
    }

    private static double Median(double[] values)
    {
        var sorted = (double[])values.Clone();
        Array.Sort(sorted);
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    /// <summary>The reference: base gfns in a sorted array, one binary search, one range check.</summary>
    private sealed class FlatSlots(Memslot[] sortedByGfn)
    {
        private readonly ulong[] _baseGfns = sortedByGfn.Select(s => s.BaseGfn).ToArray();
        private readonly ulong[] _endGfns = sortedByGfn.Select(s => s.EndGfn).ToArray();
        private readonly ushort[] _ids = sortedByGfn.Select(s => s.Id).ToArray();

        public int Find(ulong gfn)
        {
            int index = Array.BinarySearch(_baseGfns, gfn);
            if (index < 0) index = ~index - 1;
            return index >= 0 && gfn < _endGfns[index] ? _ids[index] : -1;
        }
    }

    private sealed class AcceptingBackend : IMemslotBackend
    {
        public int SetUserMemoryRegion(in kvm_userspace_memory_region region) => 0;
        public int GetDirtyLog(uint packedSlot, Span<ulong> bitmap) => 0;
    }
}
