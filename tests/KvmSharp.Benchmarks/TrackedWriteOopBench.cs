using System.Diagnostics;
using System.Globalization;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Trackers.Remote;

namespace KvmSharp.Benchmarks;

/// <summary>
/// A synchronous out-of-process tracked write against an in-process one, same guest, same process, same
/// memfd-backed VM configuration (scripts/bench.sh tracked-write-oop). In-process: <see cref="TrackedWriteBench"/>'s
/// guest with a notifier that timestamps and counts. Out-of-process: the same notifier (for the clock) and a
/// tracker in another process (the C client of the integration tests, gcc -O2) subscribed synchronously, so
/// each write waits for that process's ack before the vCPU resumes. Both track gfn 8 write-trapped.
/// </summary>
internal static class TrackedWriteOopBench
{
    // How long each side spins before it blocks on its eventfd (BENCH_OOP_SPIN_US, default 0: on a loaded host a
    // spinning peer only takes the CPU from the other side; a sleeper is woken promptly).
    private static readonly int SpinMicroseconds = int.TryParse(Environment.GetEnvironmentVariable("BENCH_OOP_SPIN_US"), out int us) ? us : 0;

    private static VirtualMachine CreateVm(byte[] bytes) =>
        VirtualMachine.Create(new VmConfig
        {
            MemoryBytes = TrackedWriteGuest.MemoryBytes,
            Cpus = 1,
            Image = new GuestImage(bytes, TrackedWriteGuest.LoadAddress, TrackedWriteGuest.LoadAddress, CpuMode.Real, "tracked-write-oop"),
            SerialSink = new NullSerialSink(),
            DebugExitPort = TrackedWriteGuest.DebugExitPort,
            MemfdBacking = true,
        });

    private static GuestLoopBench.Result InProcess(byte[] bytes)
    {
        var notifier = new TimestampingTrackNotifier();
        using var vm = CreateVm(bytes);
        vm.PageTracker.Register(notifier);
        vm.PageTracker.AddGfn(TrackedWriteGuest.TargetGfn, TrackingMode.TrapWrites);
        return Finish(vm, notifier, GuestLoopBench.Start(vm));
    }

    private static GuestLoopBench.Result OutOfProcess(byte[] bytes, string client)
    {
        var notifier = new TimestampingTrackNotifier();
        using var vm = CreateVm(bytes);
        vm.PageTracker.Register(notifier);
        string socket = Path.Combine(Path.GetTempPath(), $"kvmsharp-bench-{Environment.ProcessId}.sock");
        GuestLoopBench.TimedRun run;
        long remoteLost;
        using (var server = RemoteTrackerServer.Start(vm, socket, new RemoteTrackerOptions { AckSpin = TimeSpan.FromMicroseconds(SpinMicroseconds) }))
        {
            var start = new ProcessStartInfo(client) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (string a in new[] { socket, $"0x{TrackedWriteGuest.TargetGfn:x}", "1", "sync", "deadline=5000", "quiet", $"spin={SpinMicroseconds}" }) start.ArgumentList.Add(a);
            using var tracker = Process.Start(start)!;
            long lines = -1;
            tracker.OutputDataReceived += (_, e) => { if (e.Data?.StartsWith("writes=", StringComparison.Ordinal) == true) Interlocked.Exchange(ref lines, long.Parse(e.Data[7..], CultureInfo.InvariantCulture)); };
            tracker.BeginOutputReadLine();
            // Its "tracking" line comes after the VMM's reply to ADD_GFNS, i.e. after the re-carve: starting the vCPU
            // while the carve is under way (the count is already visible then) can end the guest.
            var stderr = new System.Text.StringBuilder();
            using var tracking = new ManualResetEventSlim();
            tracker.ErrorDataReceived += (_, e) =>
            {
                lock (stderr) stderr.AppendLine(e.Data);
                if (e.Data?.StartsWith("tracking", StringComparison.Ordinal) == true) tracking.Set();
            };
            tracker.BeginErrorReadLine();
            var clock = Stopwatch.StartNew();
            while (!tracking.Wait(10))
            {
                if (tracker.HasExited || clock.Elapsed > TimeSpan.FromSeconds(30))
                    throw new BenchException($"the tracker process did not attach: {(tracker.HasExited ? stderr.ToString() : "timeout")}");
            }
            run = GuestLoopBench.Start(vm);
            server.Dispose();
            if (!tracker.WaitForExit(TimeSpan.FromSeconds(30))) tracker.Kill();
            tracker.WaitForExit();
            remoteLost = notifier.Writes - Interlocked.Read(ref lines);
            if (server.Detachments.Any(d => !d.Contains("the VM ended", StringComparison.Ordinal)))
                throw new BenchException($"the tracker was detached: {string.Join("; ", server.Detachments)}");
        }
        if (remoteLost != 0) throw new BenchException($"the tracker process counted {notifier.Writes - remoteLost} writes, the VM made {notifier.Writes}");
        return Finish(vm, notifier, run);
    }

    private static GuestLoopBench.Result Finish(VirtualMachine vm, TimestampingTrackNotifier notifier, GuestLoopBench.TimedRun run)
    {
        if (run.Outcome is { Kind: VmExitKind.GuestExit, ExitCode: 1 })
            throw new BenchException("the guest read back something other than its last write: a trapped write was not applied");
        GuestLoopBench.RequireCleanExit(run.Outcome);
        if (notifier.Writes == 0) throw new BenchException("the guest made no write to the tracked page");
        return run.Figures(notifier.Writes, notifier.FirstWriteTimestamp, notifier.FirstWriteThreadCpuNs);
    }

    /// <summary>Warm-ups of both kinds, then one timed run of each (the order given); prints inproc_ and oop_ figures.</summary>
    public static int Run(string file, int warmups, string client, bool outOfProcessFirst)
    {
        byte[] bytes = File.ReadAllBytes(file);
        for (int i = 0; i < warmups; i++)
        {
            InProcess(bytes);
            OutOfProcess(bytes, client);
            Thread.Sleep(150);
        }
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GuestLoopBench.Result inProcess, outOfProcess;
        if (outOfProcessFirst)
        {
            outOfProcess = OutOfProcess(bytes, client);
            inProcess = InProcess(bytes);
        }
        else
        {
            inProcess = InProcess(bytes);
            outOfProcess = OutOfProcess(bytes, client);
        }
        var inv = CultureInfo.InvariantCulture;
        Console.WriteLine($"tracked_writes={inProcess.Count}");
        Console.WriteLine($"oop_tracked_writes={outOfProcess.Count}");
        Console.WriteLine(string.Create(inv, $"inproc_ns_per_write={inProcess.NsPerEvent:F1}"));
        Console.WriteLine(string.Create(inv, $"inproc_cpu_ns_per_write={inProcess.CpuNsPerEvent:F1}"));
        Console.WriteLine(string.Create(inv, $"oop_ns_per_write={outOfProcess.NsPerEvent:F1}"));
        Console.WriteLine(string.Create(inv, $"oop_cpu_ns_per_write={outOfProcess.CpuNsPerEvent:F1}"));
        return 0;
    }
}
