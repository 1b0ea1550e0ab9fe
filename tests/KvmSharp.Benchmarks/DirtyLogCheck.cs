using System.Diagnostics;
using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.DirtyLog;
using KvmSharp.Tests.Integration.DirtyLog;

namespace KvmSharp.Benchmarks;

/// <summary>
/// `kvmsharp-bench dirty-check`: the exact-set harvest checks of DirtyLogHarvestTests (linked, not
/// copied) in every dirty-log mode, and the full-ring case, as a program for the nested testbed,
/// where VSTest's host starts too slowly. A mode this KVM lacks is reported as skipped with the
/// capability's value. One line per mode, then "dirty-check: all passed" only when every mode ran
/// and passed; exit status 1 on a failure, 0 otherwise (skips included: read the last line).
/// </summary>
public static class DirtyLogCheck
{
    public static int Run()
    {
        int manual, ring;
        using (var system = KvmSystem.Open())
        {
            var facts = KvmHostFacts.Read(system);
            manual = facts.Value(KvmCap.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
            ring = facts.Value(KvmCap.KVM_CAP_DIRTY_LOG_RING);
        }
        Console.WriteLine($"KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2={manual}, KVM_CAP_DIRTY_LOG_RING={ring}");
        string? manualMissing = (manual & 3) == 3 ? null : $"KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2={manual}, needs both bits of 3";
        string? ringMissing = ring > 0 ? null : $"KVM_CAP_DIRTY_LOG_RING={ring}";

        var checks = new (string Name, string? Missing, Func<DirtyLogHarvestCheck.Result> Run)[]
        {
            ("bitmap", null, () => DirtyLogHarvestCheck.HarvestRounds(DirtyLogMode.Bitmap)),
            ("manual-protect", manualMissing, () => DirtyLogHarvestCheck.HarvestRounds(DirtyLogMode.ManualProtect)),
            ("ring", ringMissing, () => DirtyLogHarvestCheck.HarvestRounds(DirtyLogMode.Ring)),
            ("ring-full", ringMissing, DirtyLogHarvestCheck.RingFull),
        };
        var ran = new List<string>();
        int failed = 0, skipped = 0;
        foreach (var (name, missing, run) in checks)
        {
            if (missing is not null)
            {
                Console.WriteLine($"skipped: {name} (this KVM reports {missing})");
                skipped++;
                continue;
            }
            var clock = Stopwatch.StartNew();
            try
            {
                var r = run();
                Console.WriteLine($"ok: {name} ({r.Rounds} rounds, {r.PagesHarvested} pages harvested exactly, {r.TrackedWrites} tracked writes, " +
                    $"{r.RingFullExits} ring-full exits{(r.RingEntries > 0 ? $" with {r.RingEntries}-entry rings" : "")}; {clock.Elapsed.TotalSeconds:F1} s)");
                ran.Add(name);
            }
            catch (Exception e) when (e is DirtyLogCheckException or KvmException or ArgumentException or InvalidOperationException)
            {
                Console.WriteLine($"FAILED: {name} ({e.GetType().Name}: {e.Message}; {clock.Elapsed.TotalSeconds:F1} s)");
                failed++;
            }
        }
        Console.WriteLine($"modes run: {(ran.Count > 0 ? string.Join(' ', ran) : "none")}");
        Console.WriteLine(failed == 0 && skipped == 0
            ? "dirty-check: all passed"
            : $"dirty-check: {ran.Count} passed, {failed} failed, {skipped} skipped");
        return failed == 0 ? 0 : 1;
    }
}
