using System.Diagnostics;
using Iced.Intel;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Machine;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Benchmarks;

/// <summary>
/// `kvmsharp-bench tracking-scale [MODE]`: how tracking cost grows with what is tracked (issue 9,
/// item 4). A 1 GiB guest with one vCPU spinning; scattered gfns (every other page) are tracked in
/// batches up to each level (1k, 10k, 100k), then at each level: 100 single AddGfn and 100 single
/// RemoveGfn of further gfns are timed (ops/s and ms per op), and a batch AddGfns/RemoveGfns of 10,000
/// further gfns (gfns/s). Kernel slots used and slots carved coarser are printed per level. Single ops
/// at 1k are the reference: the last line is ratio=X.XX, the 10k single-op time over the 1k one
/// (1.00 = independent of the count).
/// </summary>
internal static class TrackingScaleBench
{
    private const ulong MemoryBytes = 1UL << 30;
    private const ulong FirstGfn = 0x1000;   // 16 MiB up: clear of code, stacks and page tables
    private const int SingleOps = 100, BatchGfns = 10_000;
    private static readonly int[] Levels = [1_000, 10_000, 100_000];

    public static int Run(TrackingMode mode)
    {
        using var vm = VirtualMachine.Create(new VmConfig
        {
            MemoryBytes = MemoryBytes,
            Cpus = 1,
            Image = new GuestImage(Spin(), LongModeSetup.LowestUsableAfterTables, LongModeSetup.LowestUsableAfterTables, Vmm.Boot.CpuMode.Long, "tracking-scale"),
            SerialSink = new NullSerialSink(),
            PageTracking = new PageTrackOptions { DefaultMode = mode },
        });
        vm.Start();
        Thread.Sleep(200);
        ulong next = 0;
        ulong NextGfn() => FirstGfn + 2 * next++;
        Console.WriteLine($"mode={mode} memory={MemoryBytes >> 20}MiB vcpus=1 (spinning) scattered gfns (every other page)");
        double? singleAt1k = null, singleAt10k = null;
        int tracked = 0;
        foreach (int level in Levels)
        {
            vm.PageTracker.AddGfns(Enumerable.Range(0, level - tracked).Select(_ => NextGfn()).ToList(), mode);
            tracked = level;

            var singles = Enumerable.Range(0, SingleOps).Select(_ => NextGfn()).ToList();
            var clock = Stopwatch.StartNew();
            foreach (ulong gfn in singles) vm.PageTracker.AddGfn(gfn, mode);
            double addMs = clock.Elapsed.TotalMilliseconds / SingleOps;
            clock.Restart();
            foreach (ulong gfn in singles) vm.PageTracker.RemoveGfn(gfn);
            double removeMs = clock.Elapsed.TotalMilliseconds / SingleOps;

            var batch = Enumerable.Range(0, BatchGfns).Select(_ => NextGfn()).ToList();
            clock.Restart();
            vm.PageTracker.AddGfns(batch, mode);
            double batchAddS = clock.Elapsed.TotalSeconds;
            var (kernel, tracking, coarsened) = vm.PageTracker.KernelSlotUsage;
            clock.Restart();
            vm.PageTracker.RemoveGfns(batch);
            double batchRemoveS = clock.Elapsed.TotalSeconds;

            if (vm.Outcome is { } ended) throw new BenchException($"the VM ended during the benchmark: {ended.Summary}");
            Console.WriteLine($"level={level} single_add_ms={addMs:0.000} single_remove_ms={removeMs:0.000} single_ops_per_s={2 / ((addMs + removeMs) / 1000):0} " +
                $"batch_add_gfns_per_s={BatchGfns / batchAddS:0} batch_remove_gfns_per_s={BatchGfns / batchRemoveS:0} kernel_slots={kernel} tracking_slots={tracking} coarsened_slots={coarsened} (with {level + BatchGfns} tracked)");
            if (level == 1_000) singleAt1k = addMs + removeMs;
            if (level == 10_000) singleAt10k = addMs + removeMs;
        }
        vm.Stop("benchmark done");
        vm.WaitForExit(TimeSpan.FromSeconds(30), out _);
        Console.WriteLine($"ratio={singleAt10k / singleAt1k:0.00}");
        return 0;
    }

    private static byte[] Spin()
    {
        var a = new Assembler(64);
        var loop = a.CreateLabel();
        a.Label(ref loop);
        a.pause();
        a.jmp(loop);
        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), LongModeSetup.LowestUsableAfterTables);
        return stream.ToArray();
    }
}
