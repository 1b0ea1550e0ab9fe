using System.Diagnostics;
using System.Globalization;
using KvmSharp.Memory.DirtyLog;

namespace KvmSharp.Benchmarks;

/// <summary>
/// The guest's write throughput while KvmSharp harvests: the <see cref="DirtyBenchGuest"/> runs its rounds
/// without stopping (continuous flag set) while a host thread harvests both slots back to back for the given
/// time. Pages written per second = rounds completed in that time * pages per round. Prints
/// write_pages_per_s, harvests, harvest_us (mean), ring_full_exits.
/// </summary>
internal static class DirtyThroughputBench
{
    public static int Run(string modeName, int seconds)
    {
        var mode = DirtyHarvestBench.ParseMode(modeName);
        using var vm = DirtyHarvestBench.CreateVm(DirtyBenchGuest.Assemble(), mode);
        vm.Memory.WriteUInt64(DirtyBenchGuest.ContinuousFlag, 1);
        var low = new ulong[(DirtyBenchGuest.LowRamBytes >> 12) / 64];
        var high = new ulong[((DirtyBenchGuest.MemoryBytes - DirtyBenchGuest.LowRamBytes) >> 12) / 64];
        vm.Start();

        // Let the guest touch all eight phases once (host page allocation) before measuring.
        var warm = Stopwatch.StartNew();
        while (vm.Memory.ReadUInt64(DirtyBenchGuest.RoundCounter) < 16 && warm.Elapsed < TimeSpan.FromSeconds(120) && vm.Outcome is null) Thread.Sleep(10);
        if (vm.Outcome is { } ended) throw new BenchException($"the guest ended during warm-up: {ended}");

        ulong startRounds = vm.Memory.ReadUInt64(DirtyBenchGuest.RoundCounter);
        long harvests = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(seconds))
        {
            vm.DirtyLog.Harvest(0, low);
            vm.DirtyLog.Harvest(1, high);
            harvests++;
        }
        double elapsed = clock.Elapsed.TotalSeconds;
        ulong rounds = vm.Memory.ReadUInt64(DirtyBenchGuest.RoundCounter) - startRounds;
        if (vm.Outcome is { } outcome) throw new BenchException($"the guest ended while harvesting: {outcome}");
        vm.Stop("benchmark done");

        var inv = CultureInfo.InvariantCulture;
        Console.WriteLine(string.Create(inv, $"write_pages_per_s={rounds * DirtyBenchGuest.PagesPerRound / elapsed:F0}"));
        Console.WriteLine($"harvests={harvests}");
        Console.WriteLine(string.Create(inv, $"harvest_us={elapsed * 1e6 / Math.Max(1, harvests):F1}"));
        Console.WriteLine($"ring_full_exits={vm.DirtyLog.RingFullExits}");
        return 0;
    }
}
