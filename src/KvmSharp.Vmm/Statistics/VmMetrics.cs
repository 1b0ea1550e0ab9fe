using System.Diagnostics.Metrics;

namespace KvmSharp.Vmm.Statistics;

/// <summary>
/// The VM's exit statistics as System.Diagnostics.Metrics instruments on the meter "KvmSharp.Vm": observable
/// instruments that read the vCPUs' preallocated counters when a listener collects, so the exit path does no
/// extra work for them. Tags: reason, bus and device; device I/O by device, type and direction. Every instrument is
/// observable, so one collection (<see cref="PrometheusText"/>, a MeterListener) sees the totals so far.
/// </summary>
public sealed class VmMetrics : IDisposable
{
    public const string MeterName = "KvmSharp.Vm";

    private readonly Meter _meter;
    private readonly Func<ExitStatisticsReport> _collect;

    /// <param name="collect">Aggregates the counters now (called on the listener's thread, never on a vCPU thread).</param>
    /// <param name="meterFactory">Where the meter comes from (dependency injection); a standalone meter without it.</param>
    /// <param name="memslots">The VM's memslot usage now (user slots, kernel slots, what tracking takes); none when null.</param>
    /// <param name="deviceIo">The devices that count their I/O (read when collecting); none when null.</param>
    /// <param name="pageTracking">Tracked guest writes and notifier faults so far; none when null.</param>
    public VmMetrics(Func<ExitStatisticsReport> collect, IMeterFactory? meterFactory = null, Func<MemslotUsage>? memslots = null,
        Func<IReadOnlyList<DeviceIoSource>>? deviceIo = null, Func<(long TrackedWrites, long NotifierFaults)>? pageTracking = null)
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
        _meter.CreateObservableCounter("kvmsharp.vm.pause_time", () => Pauses.Total.TotalSeconds,
            unit: "s", description: "time the VM spent paused (every pause lease's holder together)");
        _meter.CreateObservableCounter("kvmsharp.vm.pauses", () => Pauses.Pauses,
            unit: "{pause}", description: "times the VM was paused");
        if (deviceIo is not null)
        {
            _meter.CreateObservableCounter("kvmsharp.vm.device.io.operations", () => IoRows(deviceIo, c => c.ReadOps, c => c.WriteOps),
                unit: "{operation}", description: "device requests completed, by device and direction (read: data to the guest, write: data from it)");
            _meter.CreateObservableCounter("kvmsharp.vm.device.io.bytes", () => IoRows(deviceIo, c => c.ReadBytes, c => c.WriteBytes),
                unit: "By", description: "device data moved, by device and direction (read: to the guest, write: from it)");
        }
        if (pageTracking is not null)
        {
            _meter.CreateObservableCounter("kvmsharp.vm.page_track.writes", () => pageTracking().TrackedWrites,
                unit: "{write}", description: "guest and device writes to tracked pages, reported to page-track notifiers");
            _meter.CreateObservableCounter("kvmsharp.vm.page_track.notifier_faults", () => pageTracking().NotifierFaults,
                unit: "{fault}", description: "page-track notifier hooks that threw");
        }
        if (memslots is not null)
        {
            _meter.CreateObservableGauge("kvmsharp.vm.memslots.kernel", () => memslots().KernelSlots,
                unit: "{memslot}", description: "memslots handed to the kernel (user slots and page tracking's pieces)");
            _meter.CreateObservableGauge("kvmsharp.vm.memslots.tracking", () => memslots().TrackingKernelSlots,
                unit: "{memslot}", description: "kernel memslots page tracking's carving takes beyond the user's slots");
        }
    }

    public Meter Meter => _meter;

    /// <summary>The VM's paused time, for <c>kvmsharp.vm.pause_time</c>: its controller feeds it (<see cref="PauseClock.Observe"/>).</summary>
    public PauseClock Pauses { get; } = new();

    private IEnumerable<Measurement<T>> Rows<T>(Func<ExitStatisticsReport, IReadOnlyList<ExitStatisticsRow>> pick, string tag, Func<ExitStatisticsRow, T> value)
        where T : struct =>
        pick(_collect()).Select(row => new Measurement<T>(value(row), new KeyValuePair<string, object?>(tag, row.Name))).ToList();

    private IEnumerable<Measurement<T>> DeviceRows<T>(Func<ExitStatisticsRow, T> value) where T : struct =>
        _collect().Ranges.Select(row => new Measurement<T>(value(row),
            new KeyValuePair<string, object?>("bus", row.Group), new KeyValuePair<string, object?>("device", row.Name))).ToList();

    private static IEnumerable<Measurement<long>> IoRows(Func<IReadOnlyList<DeviceIoSource>> sources, Func<KvmSharp.Devices.Statistics.DeviceIoCounters, long> read,
        Func<KvmSharp.Devices.Statistics.DeviceIoCounters, long> write)
    {
        var rows = new List<Measurement<long>>();
        foreach (var source in sources())
        {
            rows.Add(new Measurement<long>(read(source.Counters), new("device", source.Device), new("type", source.Type), new("direction", "read")));
            rows.Add(new Measurement<long>(write(source.Counters), new("device", source.Device), new("type", source.Type), new("direction", "write")));
        }
        return rows;
    }

    private IEnumerable<Measurement<double>> StartToFirstRun() =>
        _collect().StartToFirstRun is { } elapsed ? [new Measurement<double>(elapsed.TotalSeconds)] : [];

    public void Dispose() => _meter.Dispose();
}
