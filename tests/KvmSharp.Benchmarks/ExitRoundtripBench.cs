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
    private static GuestLoopBench.Result RunOnce(byte[] bytes)
    {
        using var vm = GuestLoopBench.CreateVm(bytes, ExitRoundtripGuest.MemoryBytes, ExitRoundtripGuest.LoadAddress, ExitRoundtripGuest.DebugExitPort, "exit-roundtrip");
        var device = new TimestampingNullDevice();
        vm.PortBus.Register(ExitRoundtripGuest.BenchPort, 1, device, "bench-null");

        var run = GuestLoopBench.Start(vm);

        GuestLoopBench.RequireCleanExit(run.Outcome);
        long writes = device.Writes;
        if (writes == 0) throw new BenchException("the guest made no exit on port 0x80");
        return run.Figures(writes, device.FirstWriteTimestamp, device.FirstWriteThreadCpuNs);
    }

    public static int Run(string file, int warmups) => GuestLoopBench.Run(file, warmups, "exits_0x80", "exit", RunOnce);
}
