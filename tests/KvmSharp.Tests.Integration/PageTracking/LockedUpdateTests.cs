using KvmSharp.Memory.PageTracking;
using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace KvmSharp.Tests.Integration.PageTracking;

/// <summary>
/// Locked read-modify-writes on an access-trapped page are atomic across vCPUs (issue 9, item 1):
/// 2 and 4 vCPUs at CPL3 hammer one tracked word; no update is lost, and every write that lands is
/// reported once (a cmpxchg that failed is not).
/// </summary>
public sealed class LockedUpdateTests(ITestOutputHelper output)
{
    private const int Iterations = 1000;

    public static TheoryData<LockedUpdate, int> Cases()
    {
        var cases = new TheoryData<LockedUpdate, int>();
        foreach (var update in Enum.GetValues<LockedUpdate>())
            foreach (int cpus in new[] { 2, 4 })
                cases.Add(update, cpus);
        return cases;
    }

    [KvmTheory]
    [MemberData(nameof(Cases))]
    public void No_locked_update_is_lost_across_vcpus(LockedUpdate update, int cpus)
    {
        var result = LockedUpdateCheck.Run(update, cpus, Iterations, TrackingMode.TrapAccesses);
        output.WriteLine(result.ToString());
        Assert.True(result.Passed, result.ToString());
        long writes = (long)cpus * Iterations;
        switch (update)
        {
            case LockedUpdate.Inc or LockedUpdate.Add or LockedUpdate.Xadd or LockedUpdate.CompareExchangeLoop:
                // One report per update that landed; the failed cmpxchg of the loop are not reports.
                Assert.Equal(writes, result.ReportsAtWord);
                Assert.Equal(writes, result.Reports);
                break;
            case LockedUpdate.OrAndOwnBit:
                Assert.Equal(2 * writes, result.ReportsAtWord);
                break;
            default:
                // Every acquire that took the lock and every release wrote the lock word; failed bts (the bit already set) are writes too.
                Assert.True(result.Reports >= 2 * writes, result.ToString());
                break;
        }
    }
}
