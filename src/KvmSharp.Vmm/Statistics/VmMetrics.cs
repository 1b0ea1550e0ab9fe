using System.Diagnostics.Metrics;

namespace KvmSharp.Vmm.Statistics;

/// <summary>
/// The VM's exit statistics as System.Diagnostics.Metrics instruments on the meter "KvmSharp.Vm": observable
/// instruments that read the vCPUs' preallocated counters when a listener collects, so the exit path does no
/// extra work for them. Tags: reason, bus and device.
/// </summary>
public sealed class VmMetrics : IDisposable
{
    public const string MeterName = "KvmSharp.Vm";

    private readonly Meter _meter;
    private readonly Func<ExitStatisticsReport> _collect;

    /// <param name="collect">Aggregates the counters now (called on the listener's thread, never on a vCPU thread).</param>
    /// <param name="meterFactory">Where the meter comes from (dependency injection); a standalone meter without it.</param>
    /// <param name="memslots">The VM's memslot usage now (user slots, kernel slots, what tracking takes); none when null.</param>
    public VmMetrics(Func<ExitStatisticsReport> collect, IMeterFactory? meterFactory = null, Func<MemslotUsage>? memslots = null)
    {
        _collect = collect;
        _meter = meterFactory?.Create(MeterName) ?? new Meter(MeterName);
        _meter.CreateObservableCounter("kvmsharp.vm.exits", () => Rows(r => r.Reasons, "reason", row => row.Count),
            unit: "{exit}", description: "vCPU exits handled in userspace, by exit reason");
        _meter.CreateObservableCounter("kvmsharp.vm.exit.handler_time", () => Rows(r => r.Reasons, "reason", row => row.HandlerTime.TotalSeconds),
            unit: "s", description: "time spent in userspace exit handlers, by exit reason");
        _meter.CreateObservableCounter("kvmsharp.vm.device.exits", () => DeviceRows(row => row.Count),
            unit: "{exit}", description: "exits handled by each port or MMIO range");
        _meter.CreateObservableCounter("kvmsharp.vm.device.handler_time", () => DeviceRows(row => row.HandlerTime.TotalSeconds),
            unit: "s", description: "time spent in exit handlers, by port or MMIO range");
        _meter.CreateObservableCounter("kvmsharp.vm.run_time", () => _collect().RunTime.TotalSeconds,
            unit: "s", description: "time the vCPUs spent inside KVM_RUN");
        _meter.CreateObservableGauge("kvmsharp.vm.start_to_first_run", StartToFirstRun,
            unit: "s", description: "process start to the first KVM_RUN");
        if (memslots is not null)
        {
            _meter.CreateObservableGauge("kvmsharp.vm.memslots.kernel", () => memslots().KernelSlots,
                unit: "{memslot}", description: "memslots handed to the kernel (user slots and page tracking's pieces)");
            _meter.CreateObservableGauge("kvmsharp.vm.memslots.tracking", () => memslots().TrackingKernelSlots,
                unit: "{memslot}", description: "kernel memslots page tracking's carving takes beyond the user's slots");
        }
    }

    public Meter Meter => _meter;

    private IEnumerable<Measurement<T>> Rows<T>(Func<ExitStatisticsReport, IReadOnlyList<ExitStatisticsRow>> pick, string tag, Func<ExitStatisticsRow, T> value)
        where T : struct =>
        pick(_collect()).Select(row => new Measurement<T>(value(row), new KeyValuePair<string, object?>(tag, row.Name))).ToList();

    private IEnumerable<Measurement<T>> DeviceRows<T>(Func<ExitStatisticsRow, T> value) where T : struct =>
        _collect().Ranges.Select(row => new Measurement<T>(value(row),
            new KeyValuePair<string, object?>("bus", row.Group), new KeyValuePair<string, object?>("device", row.Name))).ToList();

    private IEnumerable<Measurement<double>> StartToFirstRun() =>
        _collect().StartToFirstRun is { } elapsed ? [new Measurement<double>(elapsed.TotalSeconds)] : [];

    public void Dispose() => _meter.Dispose();
}
