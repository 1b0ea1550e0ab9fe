using System.Diagnostics;
using System.Globalization;
using Iced.Intel;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Machine;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Benchmarks;

/// <summary>
/// Tracking operations per second on a slot whose vCPUs are running: a long-mode guest spins on every vCPU
/// writing one qword per page of a <see cref="Pages"/>-page region in slot 0, while the host thread does
/// alternating <see cref="PageTracker.AddGfn"/> / <see cref="PageTracker.RemoveGfn"/> on random gfns of that
/// region (add g, remove g, add g', ...). Every one of them changes the kernel layout (the gfn's count goes
/// 0 -> 1 or 1 -> 0), so each pauses every vCPU, re-carves slot 0 and resumes them.
/// </summary>
/// <remarks>
/// Untimed warm-up operations run first on the same VM (tiered JIT); then up to OPS operations, bounded by
/// SECONDS of wall time. Prints operations and add+remove pairs per second, per-operation latency (median
/// and p99 of add and remove apart), the host thread's CPU time per operation, and guest progress during
/// the timed window (each vCPU's passes over the region, and the writes that hit a tracked page), which
/// shows the vCPUs really ran between operations. The VM is stopped from the host afterwards.
/// </remarks>
internal static class TrackingOpsBench
{
    public const ulong LoadAddress = LongModeSetup.LowestUsableAfterTables; // 0x10000
    public const ulong Progress = 0xF0000;   // qword per vCPU: passes over the region so far
    public const ulong Region = 0x100000;    // the spun-on pages: gfns 0x100..0x13f, all in slot 0
    public const int Pages = 64;
    public const ulong MemoryBytes = 4UL << 20;
    public const int DefaultOperations = 2000, DefaultSeconds = 10, DefaultCpus = 2, WarmupOperations = 200;

    public static int Run(int operations, int seconds, int cpus)
    {
        var notifier = new CountingTrackNotifier();
        using var vm = VirtualMachine.Create(new VmConfig
        {
            MemoryBytes = MemoryBytes,
            Cpus = cpus,
            Image = new GuestImage(Assemble(), LoadAddress, LoadAddress, CpuMode.Long, "tracking-ops"),
            SerialSink = new NullSerialSink(),
        });
        vm.PageTracker.Register(notifier);
        vm.Start();
        WaitForProgress(vm, cpus, TimeSpan.FromSeconds(30));

        var random = new Random(20240607);
        DoOperations(vm, random, WarmupOperations, TimeSpan.FromSeconds(seconds), null, null);
        Thread.Sleep(150); // let the tiered JIT's background compilation finish

        var addTicks = new long[(operations + 1) / 2];
        var removeTicks = new long[operations / 2];
        long[] progressBefore = ReadProgress(vm, cpus);
        long trackedBefore = notifier.Writes;
        long cpuStart = ThreadClock.NowNs();
        long start = Stopwatch.GetTimestamp();
        int done = DoOperations(vm, random, operations, TimeSpan.FromSeconds(seconds), addTicks, removeTicks);
        long elapsed = Stopwatch.GetTimestamp() - start;
        long cpuNs = ThreadClock.NowNs() - cpuStart;
        long[] progressAfter = ReadProgress(vm, cpus);
        long trackedDuring = notifier.Writes - trackedBefore;

        if (vm.Outcome is { } early) throw new BenchException($"the VM ended during the benchmark: {early.Summary}\n{early.Report}");
        vm.Stop("benchmark done");
        if (!vm.WaitForExit(TimeSpan.FromSeconds(30), out var outcome) || outcome is null)
            throw new BenchException("the VM did not stop within 30 s");
        if (outcome.Kind != VmExitKind.Stopped)
            throw new BenchException($"the VM ended as {outcome.Summary}, not stopped by the host\n{outcome.Report}");
        if (vm.MmioBus.UnhandledReads + vm.MmioBus.UnhandledWrites != 0)
            throw new BenchException("a guest access reached the MMIO bus while tracking changed");
        if (vm.PageTracker.TrackedGfns.Values.Sum(g => g.Count) != 0)
            throw new BenchException("gfns are still tracked after the last remove");

        double wallS = elapsed / (double)Stopwatch.Frequency;
        var inv = CultureInfo.InvariantCulture;
        var passes = Enumerable.Range(0, cpus).Select(i => (progressAfter[i] - progressBefore[i]).ToString(inv));
        Console.WriteLine($"tracking_ops={done}");
        Console.WriteLine($"vcpus={cpus}");
        Console.WriteLine($"guest_passes_during={string.Join('+', passes)}");
        Console.WriteLine($"tracked_writes_during={trackedDuring}");
        Console.WriteLine(string.Create(inv, $"wall_s={wallS:F3}"));
        Console.WriteLine(string.Create(inv, $"add_us_median={Micros(Percentile(addTicks, (done + 1) / 2, 0.5)):F1}"));
        Console.WriteLine(string.Create(inv, $"add_us_p99={Micros(Percentile(addTicks, (done + 1) / 2, 0.99)):F1}"));
        Console.WriteLine(string.Create(inv, $"remove_us_median={Micros(Percentile(removeTicks, done / 2, 0.5)):F1}"));
        Console.WriteLine(string.Create(inv, $"remove_us_p99={Micros(Percentile(removeTicks, done / 2, 0.99)):F1}"));
        Console.WriteLine(string.Create(inv, $"host_cpu_us_per_op={cpuNs / 1e3 / Math.Max(done, 1):F1}"));
        Console.WriteLine(string.Create(inv, $"tracking_pairs_per_s={done / 2 / wallS:F0}"));
        Console.WriteLine(string.Create(inv, $"tracking_ops_per_s={done / wallS:F0}"));
        return 0;
    }

    // Add g, remove g, add g', remove g', ... Ends on a remove (an odd count gets its final remove untimed).
    private static int DoOperations(VirtualMachine vm, Random random, int operations, TimeSpan limit, long[]? addTicks, long[]? removeTicks)
    {
        var tracker = vm.PageTracker;
        long deadline = Stopwatch.GetTimestamp() + (long)(limit.TotalSeconds * Stopwatch.Frequency);
        ulong gfn = 0;
        int done = 0;
        for (; done < operations; done++)
        {
            long before = Stopwatch.GetTimestamp();
            if (before > deadline && done % 2 == 0) break;
            if (done % 2 == 0)
            {
                gfn = (Region >> 12) + (ulong)random.Next(Pages);
                tracker.AddGfn(gfn);
                if (addTicks is not null) addTicks[done / 2] = Stopwatch.GetTimestamp() - before;
            }
            else
            {
                tracker.RemoveGfn(gfn);
                if (removeTicks is not null) removeTicks[done / 2] = Stopwatch.GetTimestamp() - before;
            }
            if (vm.Outcome is { } outcome) throw new BenchException($"the VM ended during tracking operation {done}: {outcome.Summary}\n{outcome.Report}");
        }
        if (done % 2 == 1) tracker.RemoveGfn(gfn);
        return done;
    }

    private static void WaitForProgress(VirtualMachine vm, int cpus, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (ReadProgress(vm, cpus).Any(p => p == 0))
        {
            if (vm.Outcome is { } outcome) throw new BenchException($"the guest ended before spinning: {outcome.Summary}\n{outcome.Report}");
            if (clock.Elapsed > timeout) throw new BenchException($"a vCPU made no pass over the region within {timeout.TotalSeconds:F0} s");
            Thread.Sleep(1);
        }
    }

    private static long[] ReadProgress(VirtualMachine vm, int cpus) =>
        Enumerable.Range(0, cpus).Select(i => (long)vm.Memory.ReadUInt64(Progress + 8 * (ulong)i)).ToArray();

    private static long Percentile(long[] ticks, int count, double p)
    {
        if (count <= 0) return 0;
        var sorted = ticks.AsSpan(0, Math.Min(count, ticks.Length)).ToArray();
        Array.Sort(sorted);
        return sorted[Math.Min(sorted.Length - 1, (int)(p * sorted.Length))];
    }

    private static double Micros(long ticks) => ticks * 1e6 / Stopwatch.Frequency;

    /// <summary>
    /// The spinning guest (64-bit, entered with rsi = vCPU id): forever, write the pass number to qword
    /// <c>id</c> of each page of the region, then store it to the vCPU's progress qword. Uses no stack.
    /// </summary>
    public static byte[] Assemble()
    {
        var a = new Assembler(64);
        var pass = a.CreateLabel();
        var page = a.CreateLabel();
        a.mov(rbx, Region);
        a.lea(rbx, __[rbx + rsi * 8]);
        a.mov(r12, Progress);
        a.lea(r12, __[r12 + rsi * 8]);
        a.xor(eax, eax);
        a.Label(ref pass);
        a.inc(rax); // every write differs from what memory holds
        a.mov(rcx, rbx);
        a.mov(edx, Pages);
        a.Label(ref page);
        a.mov(__qword_ptr[rcx], rax);
        a.add(rcx, 4096);
        a.dec(edx);
        a.jnz(page);
        a.mov(__qword_ptr[r12], rax);
        a.jmp(pass);

        using var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), LoadAddress);
        return stream.ToArray();
    }
}
