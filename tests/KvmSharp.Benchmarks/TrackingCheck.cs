using System.Diagnostics;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Tests.Integration.PageTracking;

namespace KvmSharp.Benchmarks;

/// <summary>
/// `kvmsharp-bench tracking-check`: issue 9's checks as a program for the nested testbed (a real SVM
/// KVM): 2 and 4 vCPUs hammering one tracked word with every kind of locked update in the default
/// mode (TrapAccesses) must lose nothing; the instruction classes (16-byte and ymm stores, cmpxchg16b,
/// the unchanged-store decoy, failed cmpxchg) must be reported exactly in both modes. Also printed,
/// not judged: updates TrapWrites loses (the control), and the cost of a tracked read per mode as a
/// ratio to an untracked read. Last line "tracking-check: all passed" only when every check passed;
/// exit status 1 otherwise.
/// </summary>
public static class TrackingCheck
{
    public static int Run(int iterations)
    {
        int failed = 0, passed = 0;
        void Report(string name, string? problem, TimeSpan elapsed)
        {
            if (problem is not null && problem.StartsWith("skipped: ", StringComparison.Ordinal))
            {
                Console.WriteLine($"skipped: {name}: {problem["skipped: ".Length..]}");
                return;
            }
            Console.WriteLine($"{(problem is null ? "ok" : "FAILED")}: {name} ({elapsed.TotalSeconds:0.0} s){(problem is null ? "" : $": {problem}")}");
            if (problem is null) passed++;
            else failed++;
        }

        foreach (var update in Enum.GetValues<LockedUpdate>())
        {
            foreach (int cpus in new[] { 2, 4 })
            {
                var clock = Stopwatch.StartNew();
                string? problem;
                try
                {
                    var result = LockedUpdateCheck.Run(update, cpus, iterations, TrackingMode.TrapAccesses);
                    problem = result.Passed ? null : result.ToString();
                }
                catch (Exception e)
                {
                    problem = $"{e.GetType().Name}: {e.Message}";
                }
                Report($"no lost update: {update} on {cpus} vCPUs", problem, clock.Elapsed);
            }
        }
        foreach (var mode in new[] { TrackingMode.TrapAccesses, TrackingMode.TrapWrites })
        {
            var clock = Stopwatch.StartNew();
            foreach (var (name, problem) in SafeStoreClasses(mode))
            {
                Report($"{name} ({mode})", problem, clock.Elapsed);
                clock.Restart();
            }
        }

        try
        {
            var control = LockedUpdateCheck.Run(LockedUpdate.Inc, 2, iterations, TrackingMode.TrapWrites);
            Console.WriteLine($"control (not judged): {control}; lost {control.Expected - control.Actual}");
            const int Reads = 20000;
            double untracked = TrackedStoreCheck.ReadCost(null, Reads * 50);
            double writes = TrackedStoreCheck.ReadCost(TrackingMode.TrapWrites, Reads * 50);
            double accesses = TrackedStoreCheck.ReadCost(TrackingMode.TrapAccesses, Reads);
            Console.WriteLine($"read cost at CPL3: untracked {untracked:0.0} ns, TrapWrites {writes:0.0} ns ({writes / untracked:0.0}x), TrapAccesses {accesses:0} ns ({accesses / untracked:0}x untracked)");
        }
        catch (Exception e)
        {
            Console.WriteLine($"measurements failed (not judged): {e.GetType().Name}: {e.Message}");
        }

        Console.WriteLine(failed == 0 ? $"tracking-check: all passed ({passed} checks)" : $"tracking-check: {failed} of {failed + passed} checks FAILED");
        return failed == 0 ? 0 : 1;
    }

    private static IEnumerable<(string Name, string? Problem)> SafeStoreClasses(TrackingMode mode)
    {
        var results = new List<(string, string?)>();
        try
        {
            results.AddRange(TrackedStoreCheck.StoreClasses(mode));
        }
        catch (Exception e)
        {
            results.Add(("instruction classes", $"{e.GetType().Name}: {e.Message}"));
        }
        return results;
    }
}
