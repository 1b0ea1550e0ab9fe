using System.Diagnostics;
using System.Globalization;
using System.Text;
using KvmSharp.Devices.Bus;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Vmm.Statistics;

/// <summary>
/// Exit statistics of a whole VM: the per-vCPU counters summed, per exit reason and per bus range, with
/// handler and KVM_RUN times and the time from process start to the first KVM_RUN. Built after the fact
/// (or on demand for metrics); allocates freely, never on the exit path.
/// </summary>
public sealed class ExitStatisticsReport
{
    private ExitStatisticsReport(int vcpus, IReadOnlyList<ExitStatisticsRow> reasons, IReadOnlyList<ExitStatisticsRow> ranges,
        long runCount, TimeSpan runTime, TimeSpan? startToFirstRun, long? firstRunUnixNanoseconds)
    {
        FirstRunUnixNanoseconds = firstRunUnixNanoseconds;
        Vcpus = vcpus;
        Reasons = reasons;
        Ranges = ranges;
        RunCount = runCount;
        RunTime = runTime;
        StartToFirstRun = startToFirstRun;
    }

    public int Vcpus { get; }

    /// <summary>Exit reasons seen, most frequent first.</summary>
    public IReadOnlyList<ExitStatisticsRow> Reasons { get; }

    /// <summary>Port and MMIO ranges that took exits (also "unclaimed" and "page-track"), most frequent first.</summary>
    public IReadOnlyList<ExitStatisticsRow> Ranges { get; }

    /// <summary>KVM_RUN calls that returned, over all vCPUs.</summary>
    public long RunCount { get; }

    /// <summary>Time spent inside KVM_RUN, summed over the vCPUs.</summary>
    public TimeSpan RunTime { get; }

    /// <summary>Process start to the first KVM_RUN of any vCPU, when known.</summary>
    public TimeSpan? StartToFirstRun { get; }

    /// <summary>Wall-clock time of the first KVM_RUN, nanoseconds since the Unix epoch, when there was one.</summary>
    public long? FirstRunUnixNanoseconds { get; }

    public long ExitCount => Reasons.Sum(r => r.Count);
    public TimeSpan HandlerTime => TimeSpan.FromTicks(Reasons.Sum(r => r.HandlerTime.Ticks));

    /// <summary>Sum <paramref name="counters"/>; range slots are named by <paramref name="rangeName"/> (bus, range id).</summary>
    public static ExitStatisticsReport Aggregate(IReadOnlyCollection<VcpuExitCounters> counters, Func<ExitBus, int, string> rangeName, DateTime? processStartUtc = null)
    {
        var reasons = new List<ExitStatisticsRow>();
        for (int reason = 0; reason < VcpuExitCounters.ReasonSlots; reason++)
        {
            long count = counters.Sum(c => c.ReasonCount(reason));
            if (count == 0) continue;
            long ticks = counters.Sum(c => c.ReasonTicks(reason));
            reasons.Add(new ExitStatisticsRow("reason", ReasonName(reason), count, Stopwatch.GetElapsedTime(0, ticks)));
        }

        var ranges = new List<ExitStatisticsRow>();
        foreach (var bus in new[] { ExitBus.Port, ExitBus.Mmio })
        {
            string group = bus == ExitBus.Port ? "pio" : "mmio";
            for (int slot = 0; slot <= VcpuExitCounters.InterceptedRange; slot++)
            {
                long count = counters.Sum(c => c.RangeCount(bus, slot));
                if (count == 0) continue;
                long ticks = counters.Sum(c => c.RangeTicks(bus, slot));
                string name = slot switch
                {
                    VcpuExitCounters.UnclaimedRange => "unclaimed",
                    VcpuExitCounters.OverflowRange => $"ranges with id >= {VcpuExitCounters.RangeSlots}",
                    VcpuExitCounters.InterceptedRange => "page-track (intercepted)",
                    _ => rangeName(bus, slot),
                };
                ranges.Add(new ExitStatisticsRow(group, name, count, Stopwatch.GetElapsedTime(0, ticks)));
            }
        }

        long firstRun = counters.Select(c => c.FirstRunTimestamp).Where(t => t != 0).DefaultIfEmpty(0).Min();
        TimeSpan? startToFirstRun = null;
        long? firstRunUnixNs = null;
        if (firstRun != 0)
        {
            // The wall-clock moment of the first KVM_RUN: now minus how long ago it was on the monotonic clock.
            var firstRunUtc = DateTime.UtcNow - Stopwatch.GetElapsedTime(firstRun);
            firstRunUnixNs = (firstRunUtc - DateTime.UnixEpoch).Ticks * 100;
            if (processStartUtc is { } start) startToFirstRun = firstRunUtc - start;
        }

        return new ExitStatisticsReport(
            counters.Count,
            reasons.OrderByDescending(r => r.Count).ToList(),
            ranges.OrderByDescending(r => r.Count).ToList(),
            counters.Sum(c => c.RunCount),
            Stopwatch.GetElapsedTime(0, counters.Sum(c => c.RunTicks)),
            startToFirstRun,
            firstRunUnixNs);
    }

    /// <summary>Sum <paramref name="counters"/>, naming ranges after what is registered on the two buses.</summary>
    public static ExitStatisticsReport Aggregate(IReadOnlyCollection<VcpuExitCounters> counters, DeviceBus portBus, DeviceBus mmioBus, DateTime? processStartUtc = null) =>
        Aggregate(counters, (bus, id) =>
        {
            var owner = bus == ExitBus.Port ? portBus : mmioBus;
            return id < owner.RangeIdCount ? owner.RangeById(id).ToString() : $"range {id}";
        }, processStartUtc);

    private static string ReasonName(int reason) =>
        reason == VcpuExitCounters.ReasonSlots - 1 ? $"exit reasons >= {reason}"
        : Enum.IsDefined((KvmExitReason)reason) ? ((KvmExitReason)reason).ToString()
        : $"exit reason {reason}";

    /// <summary>A table for people: one line per reason and per range, then the totals.</summary>
    public string Format()
    {
        var text = new StringBuilder();
        var c = CultureInfo.InvariantCulture;
        text.Append(c, $"exit statistics: {Vcpus} vCPU(s), {ExitCount} exits, {HandlerTime.TotalMilliseconds:0.0} ms in exit handlers, ");
        text.Append(c, $"{RunCount} KVM_RUN returns, {RunTime.TotalMilliseconds:0.0} ms inside KVM_RUN");
        if (StartToFirstRun is { } first) text.Append(c, $"; process start -> first KVM_RUN {first.TotalMilliseconds:0.0} ms");
        text.AppendLine();
        int width = Math.Max(24, Reasons.Concat(Ranges).Select(r => r.Name.Length).DefaultIfEmpty(0).Max());
        text.AppendLine(c, $"  {"",-5} {"exit reason / device".PadRight(width)} {"count",12} {"handler ms",12} {"avg us",9}");
        foreach (var row in Reasons.Concat(Ranges))
        {
            string group = row.Group == "reason" ? "" : row.Group;
            text.AppendLine(c, $"  {group,-5} {row.Name.PadRight(width)} {row.Count,12} {row.HandlerTime.TotalMilliseconds,12:0.000} {row.Average.TotalMicroseconds,9:0.00}");
        }
        return text.ToString();
    }
}
