using System.Diagnostics;
using System.Globalization;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Vcpus;

namespace KvmSharp.Benchmarks;

/// <summary>
/// Runs the tracked-write guest through KvmSharp's whole stack: <see cref="VirtualMachine"/>, its vCPU thread
/// (<see cref="VcpuRunner"/>), <see cref="ExitDispatcher"/>, the MMIO interceptor, <see cref="PageTracker"/>
/// (memslot lookup, count lookup, the store into guest memory) and a registered notifier whose
/// <see cref="IPageTrackNotifier.TrackWrite"/> does trivial work.
/// </summary>
/// <remarks>
/// Timed interval, identical to scripts/bench/tracked_write.c: from the first TrackWrite call to the
/// debug-exit write (seen through <see cref="VirtualMachine.Ended"/>, which the debug-exit device raises
/// synchronously on the vCPU thread). That holds N guest resumes each ending in one exit (N - 1 trapped
/// writes and the debug exit), and none of VM creation, carving, thread start, vCPU setup or teardown
/// (reported apart as wall_ms). Both wall time (ns_per_write) and the vCPU thread's CPU time
/// (cpu_ns_per_write) over that interval are given. Warm-up VMs run first in the same process, as in
/// <see cref="ExitRoundtripBench"/>; the first warm-up's figure is printed as cold_ns_per_write.
/// </remarks>
internal static class TrackedWriteBench
{
    private readonly record struct Result(long TrackedWrites, long TotalExits, double NsPerWrite, double CpuNsPerWrite, double WallMs);

    public static int Run(string file, int warmups)
    {
        byte[] bytes = File.ReadAllBytes(file);
        bool verbose = Environment.GetEnvironmentVariable("BENCH_VERBOSE") is { Length: > 0 };
        double? cold = null;
        for (int i = 0; i < warmups; i++)
        {
            var warm = RunOnce(bytes);
            cold ??= warm.NsPerWrite;
            if (verbose) Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"warm-up {i + 1}: {warm.NsPerWrite:F1} ns/write"));
            Thread.Sleep(150); // let the tiered JIT's background compilation finish before the next VM
        }

        GC.Collect();
        GC.WaitForPendingFinalizers();
        var result = RunOnce(bytes);

        var inv = CultureInfo.InvariantCulture;
        Console.WriteLine($"tracked_writes={result.TrackedWrites}");
        Console.WriteLine($"total_exits={result.TotalExits}");
        Console.WriteLine(string.Create(inv, $"wall_ms={result.WallMs:F2}"));
        if (cold is { } c) Console.WriteLine(string.Create(inv, $"cold_ns_per_write={c:F1}"));
        Console.WriteLine(string.Create(inv, $"cpu_ns_per_write={result.CpuNsPerWrite:F1}"));
        Console.WriteLine(string.Create(inv, $"ns_per_write={result.NsPerWrite:F1}"));
        return 0;
    }

    private static Result RunOnce(byte[] bytes)
    {
        var notifier = new TimestampingTrackNotifier();
        var end = new EndClocks();
        using var vm = VirtualMachine.Create(new VmConfig
        {
            MemoryBytes = TrackedWriteGuest.MemoryBytes,
            Cpus = 1,
            Image = new GuestImage(bytes, TrackedWriteGuest.LoadAddress, TrackedWriteGuest.LoadAddress, CpuMode.Real, "tracked-write"),
            SerialSink = new NullSerialSink(),
            DebugExitPort = TrackedWriteGuest.DebugExitPort,
        });
        vm.PageTracker.Register(notifier);
        vm.PageTracker.AddGfn(TrackedWriteGuest.TargetGfn); // carves slot 0 into three kernel slots (no vCPU yet: no pause)
        if (vm.KernelSlots.PiecesOf(0).Count != 3)
            throw new BenchException($"tracking gfn 0x{TrackedWriteGuest.TargetGfn:x} made {vm.KernelSlots.PiecesOf(0).Count} kernel slots of slot 0, expected 3");
        vm.Ended += end.Record; // raised on the vCPU thread by the debug-exit write

        long wallStart = Stopwatch.GetTimestamp();
        vm.Start();
        var outcome = vm.WaitForExit();
        long wallEnd = Stopwatch.GetTimestamp();

        if (outcome is { Kind: VmExitKind.GuestExit, ExitCode: 1 })
            throw new BenchException("the guest read back something other than its last write: a trapped write was not applied");
        if (outcome.Kind != VmExitKind.GuestExit || outcome.ExitCode != 0)
            throw new BenchException($"the guest did not reach its debug-exit write: {outcome.Summary}\n{outcome.Report}");
        long writes = notifier.Writes;
        if (writes == 0) throw new BenchException("the guest made no write to the tracked page");
        if (writes != vm.PageTracker.TrackedWrites)
            throw new BenchException($"the notifier heard {writes} writes, the tracker counted {vm.PageTracker.TrackedWrites}");
        if (vm.MmioBus.UnhandledReads + vm.MmioBus.UnhandledWrites != 0)
            throw new BenchException("an access to the tracked page reached the MMIO bus");

        double ns = (end.Timestamp - notifier.FirstWriteTimestamp) * 1e9 / Stopwatch.Frequency;
        double cpuNs = end.ThreadCpuNs - notifier.FirstWriteThreadCpuNs;
        return new Result(writes, vm.Vcpus[0].ExitCount, ns / writes, cpuNs / writes, (wallEnd - wallStart) * 1e3 / Stopwatch.Frequency);
    }

    private sealed class EndClocks
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
