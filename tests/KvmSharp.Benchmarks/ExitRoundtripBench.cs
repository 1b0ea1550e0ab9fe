using System.Diagnostics;
using System.Globalization;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Vcpus;

namespace KvmSharp.Benchmarks;

/// <summary>
/// Runs the exit-roundtrip guest through KvmSharp's whole stack: <see cref="VirtualMachine"/>, its vCPU
/// thread (<see cref="VcpuRunner"/>), <see cref="ExitDispatcher"/>, the port bus and a no-op device on 0x80.
/// </summary>
/// <remarks>
/// Timed interval, identical to scripts/bench/exit_roundtrip.c: from the first write reaching the port-0x80
/// device to the debug-exit write (seen through <see cref="VirtualMachine.Ended"/>, which the debug-exit
/// device raises synchronously on the vCPU thread). That holds N guest resumes each ending in one port-I/O
/// exit, and none of VM creation, thread start, vCPU setup or teardown (reported apart as wall_ms).
/// Both wall time (ns_per_exit) and the vCPU thread's CPU time (cpu_ns_per_exit) over that interval are given.
/// Warm-up VMs run first in the same process so the hot path is measured after tiered JIT has settled
/// (the C side has nothing to warm up); the first warm-up's figure is printed as cold_ns_per_exit.
/// </remarks>
internal static class ExitRoundtripBench
{
    private readonly record struct Result(long BenchExits, long TotalExits, double NsPerExit, double CpuNsPerExit, double WallMs);

    public static int Run(string file, int warmups)
    {
        byte[] bytes = File.ReadAllBytes(file);
        bool verbose = Environment.GetEnvironmentVariable("BENCH_VERBOSE") is { Length: > 0 };
        double? cold = null;
        for (int i = 0; i < warmups; i++)
        {
            var warm = RunOnce(bytes);
            cold ??= warm.NsPerExit;
            if (verbose) Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"warm-up {i + 1}: {warm.NsPerExit:F1} ns/exit"));
            Thread.Sleep(150); // let the tiered JIT's background compilation finish before the next VM
        }

        GC.Collect();
        GC.WaitForPendingFinalizers();
        var result = RunOnce(bytes);

        var inv = CultureInfo.InvariantCulture;
        Console.WriteLine($"exits_0x80={result.BenchExits}");
        Console.WriteLine($"total_exits={result.TotalExits}");
        Console.WriteLine(string.Create(inv, $"wall_ms={result.WallMs:F2}"));
        if (cold is { } c) Console.WriteLine(string.Create(inv, $"cold_ns_per_exit={c:F1}"));
        Console.WriteLine(string.Create(inv, $"cpu_ns_per_exit={result.CpuNsPerExit:F1}"));
        Console.WriteLine(string.Create(inv, $"ns_per_exit={result.NsPerExit:F1}"));
        return 0;
    }

    private static Result RunOnce(byte[] bytes)
    {
        var device = new TimestampingNullDevice();
        var end = new EndClocks();
        using var vm = VirtualMachine.Create(new VmConfig
        {
            MemoryBytes = ExitRoundtripGuest.MemoryBytes,
            Cpus = 1,
            Image = new GuestImage(bytes, ExitRoundtripGuest.LoadAddress, ExitRoundtripGuest.LoadAddress, CpuMode.Real, "exit-roundtrip"),
            SerialSink = new NullSerialSink(),
            DebugExitPort = ExitRoundtripGuest.DebugExitPort,
        });
        vm.PortBus.Register(ExitRoundtripGuest.BenchPort, 1, device, "bench-null");
        vm.Ended += end.Record; // raised on the vCPU thread by the debug-exit write

        long wallStart = Stopwatch.GetTimestamp();
        vm.Start();
        var outcome = vm.WaitForExit();
        long wallEnd = Stopwatch.GetTimestamp();

        if (outcome.Kind != VmExitKind.GuestExit || outcome.ExitCode != 0)
            throw new BenchException($"the guest did not reach its debug-exit write: {outcome.Summary}\n{outcome.Report}");
        long writes = device.Writes;
        if (writes == 0) throw new BenchException("the guest made no exit on port 0x80");

        double ns = (end.Timestamp - device.FirstWriteTimestamp) * 1e9 / Stopwatch.Frequency;
        double cpuNs = end.ThreadCpuNs - device.FirstWriteThreadCpuNs;
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
