using KvmSharp.Memory.PageTracking;
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
    private static GuestLoopBench.Result RunOnce(byte[] bytes)
    {
        var notifier = new TimestampingTrackNotifier();
        using var vm = GuestLoopBench.CreateVm(bytes, TrackedWriteGuest.MemoryBytes, TrackedWriteGuest.LoadAddress, TrackedWriteGuest.DebugExitPort, "tracked-write");
        vm.PageTracker.Register(notifier);
        vm.PageTracker.AddGfn(TrackedWriteGuest.TargetGfn); // carves slot 0 into three kernel slots (no vCPU yet: no pause)
        if (vm.KernelSlots.PiecesOf(0).Count != 3)
            throw new BenchException($"tracking gfn 0x{TrackedWriteGuest.TargetGfn:x} made {vm.KernelSlots.PiecesOf(0).Count} kernel slots of slot 0, expected 3");

        var run = GuestLoopBench.Start(vm);

        if (run.Outcome is { Kind: VmExitKind.GuestExit, ExitCode: 1 })
            throw new BenchException("the guest read back something other than its last write: a trapped write was not applied");
        GuestLoopBench.RequireCleanExit(run.Outcome);
        long writes = notifier.Writes;
        if (writes == 0) throw new BenchException("the guest made no write to the tracked page");
        if (writes != vm.PageTracker.TrackedWrites)
            throw new BenchException($"the notifier heard {writes} writes, the tracker counted {vm.PageTracker.TrackedWrites}");
        if (vm.MmioBus.UnhandledReads + vm.MmioBus.UnhandledWrites != 0)
            throw new BenchException("an access to the tracked page reached the MMIO bus");
        return run.Figures(writes, notifier.FirstWriteTimestamp, notifier.FirstWriteThreadCpuNs);
    }

    public static int Run(string file, int warmups) => GuestLoopBench.Run(file, warmups, "tracked_writes", "write", RunOnce);
}
