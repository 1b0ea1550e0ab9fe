using System.Diagnostics;
using System.Globalization;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Machine;

namespace KvmSharp.Benchmarks;

/// <summary>
/// What the full-stack guest-loop benchmarks (<see cref="ExitRoundtripBench"/>, <see cref="TrackedWriteBench"/>)
/// share: the warm-up VMs, the VM around a 16-bit real-mode guest binary, the wall and vCPU-thread CPU clocks
/// of the timed interval (first counted event to the debug-exit write), and the printed result.
/// </summary>
/// <remarks>
/// Each benchmark supplies one run (<c>runOnce</c>): it builds the VM with <see cref="CreateVm"/>, attaches its
/// probe, calls <see cref="Start"/>, checks the outcome and returns <see cref="TimedRun.Figures"/> with the
/// probe's count and first-event clocks. Nothing here runs on the vCPU thread between the first event and the
/// debug-exit write except <see cref="EndClocks.Record"/>, which reads two clocks and allocates nothing.
/// </remarks>
internal static class GuestLoopBench
{
    /// <summary>One timed run: <paramref name="Count"/> events (exits, writes) and the figures per event.</summary>
    public readonly record struct Result(long Count, long TotalExits, double NsPerEvent, double CpuNsPerEvent, double WallMs);

    /// <summary>
    /// Runs <paramref name="warmups"/> untimed VMs, then the timed one, and prints
    /// <c>{countName}=</c>, <c>total_exits=</c>, <c>wall_ms=</c>, <c>cold_ns_per_{unit}=</c> (with warm-ups),
    /// <c>cpu_ns_per_{unit}=</c> and <c>ns_per_{unit}=</c>, the lines scripts/bench.sh reads.
    /// </summary>
    public static int Run(string file, int warmups, string countName, string unit, Func<byte[], Result> runOnce)
    {
        byte[] bytes = File.ReadAllBytes(file);
        bool verbose = Environment.GetEnvironmentVariable("BENCH_VERBOSE") is { Length: > 0 };
        double? cold = null;
        for (int i = 0; i < warmups; i++)
        {
            var warm = runOnce(bytes);
            cold ??= warm.NsPerEvent;
            if (verbose) Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"warm-up {i + 1}: {warm.NsPerEvent:F1} ns/{unit}"));
            Thread.Sleep(150); // let the tiered JIT's background compilation finish before the next VM
        }

        GC.Collect();
        GC.WaitForPendingFinalizers();
        var result = runOnce(bytes);

        var inv = CultureInfo.InvariantCulture;
        Console.WriteLine($"{countName}={result.Count}");
        Console.WriteLine($"total_exits={result.TotalExits}");
        Console.WriteLine(string.Create(inv, $"wall_ms={result.WallMs:F2}"));
        if (cold is { } c) Console.WriteLine(string.Create(inv, $"cold_ns_per_{unit}={c:F1}"));
        Console.WriteLine(string.Create(inv, $"cpu_ns_per_{unit}={result.CpuNsPerEvent:F1}"));
        Console.WriteLine(string.Create(inv, $"ns_per_{unit}={result.NsPerEvent:F1}"));
        return 0;
    }

    /// <summary>A one-vCPU VM running <paramref name="bytes"/> in real mode from <paramref name="loadAddress"/>, UART output dropped.</summary>
    public static VirtualMachine CreateVm(byte[] bytes, ulong memoryBytes, ulong loadAddress, ushort debugExitPort, string name) =>
        VirtualMachine.Create(new VmConfig
        {
            MemoryBytes = memoryBytes,
            Cpus = 1,
            Image = new GuestImage(bytes, loadAddress, loadAddress, CpuMode.Real, name),
            SerialSink = new NullSerialSink(),
            DebugExitPort = debugExitPort,
        });

    /// <summary>Starts <paramref name="vm"/> (its probe already attached) and waits for it to end, reading the clocks at its debug-exit write.</summary>
    public static TimedRun Start(VirtualMachine vm)
    {
        var end = new EndClocks();
        vm.Ended += end.Record; // raised on the vCPU thread by the debug-exit write

        long wallStart = Stopwatch.GetTimestamp();
        vm.Start();
        var outcome = vm.WaitForExit();
        long wallEnd = Stopwatch.GetTimestamp();
        return new TimedRun(vm, outcome, end, wallStart, wallEnd);
    }

    /// <summary>Fails the run unless the guest ended with its debug-exit write of status 0.</summary>
    public static void RequireCleanExit(VmOutcome outcome)
    {
        if (outcome.Kind != VmExitKind.GuestExit || outcome.ExitCode != 0)
            throw new BenchException($"the guest did not reach its debug-exit write: {outcome.Summary}\n{outcome.Report}");
    }

    /// <summary>A finished run: its outcome, and the clocks needed to turn a probe's figures into a <see cref="GuestLoopBench.Result"/>.</summary>
    public readonly struct TimedRun(VirtualMachine vm, VmOutcome outcome, EndClocks end, long wallStart, long wallEnd)
    {
        public VmOutcome Outcome => outcome;

        /// <summary>The figures of <paramref name="count"/> events timed from the first one's clocks to the debug-exit write.</summary>
        public GuestLoopBench.Result Figures(long count, long firstTimestamp, long firstThreadCpuNs)
        {
            double ns = (end.Timestamp - firstTimestamp) * 1e9 / Stopwatch.Frequency;
            double cpuNs = end.ThreadCpuNs - firstThreadCpuNs;
            return new GuestLoopBench.Result(count, vm.Vcpus[0].ExitCount, ns / count, cpuNs / count, (wallEnd - wallStart) * 1e3 / Stopwatch.Frequency);
        }
    }

    internal sealed class EndClocks
    {
        public long Timestamp;
        public long ThreadCpuNs;

        public void Record(VmOutcome outcome)
        {
            Timestamp = Stopwatch.GetTimestamp();
            ThreadCpuNs = ThreadClock.NowNs();
        }
    }
}
