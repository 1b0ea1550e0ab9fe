using System.Diagnostics.Metrics;
using KvmSharp.Devices.Bus;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Statistics;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Vcpus;

/// <summary>Exit statistics on the real /dev/kvm: a guest doing N port writes shows N exits on that port.</summary>
public sealed class ExitStatisticsTests
{
    private const ushort CountedPort = 0xE0;
    private const int Writes = 777;

    private sealed class NullDevice : IBusDevice
    {
        public long Writes;
        public void Read(ulong offset, Span<byte> data) => data.Clear();
        public void Write(ulong offset, ReadOnlySpan<byte> data) => Writes++;
    }

    private static VirtualMachine RunPortWriter(out NullDevice device)
    {
        var image = TestGuest.LongMode(a =>
        {
            var loop = a.CreateLabel();
            a.mov(ecx, Writes);
            a.Label(ref loop);
            a.@out((byte)CountedPort, al);
            a.dec(ecx);
            a.jnz(loop);
            TestGuest.ExitWith(a, 0);
        });
        var vm = TestGuest.Create(image);
        device = new NullDevice();
        vm.PortBus.Register(CountedPort, 1, device, "counted");
        Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm, TimeSpan.FromSeconds(60)));
        return vm;
    }

    [KvmFact]
    public void N_port_writes_are_n_exits_on_that_port()
    {
        using var vm = RunPortWriter(out var device);

        var report = vm.CollectExitStatistics();

        Assert.Equal(Writes, device.Writes);
        var counted = Assert.Single(report.Ranges, r => r.Name.StartsWith("'counted'", StringComparison.Ordinal));
        Assert.Equal(("pio", (long)Writes), (counted.Group, counted.Count));
        Assert.True(counted.HandlerTime > TimeSpan.Zero);
        var debugExit = Assert.Single(report.Ranges, r => r.Name.StartsWith("'debug-exit'", StringComparison.Ordinal));
        Assert.Equal(1, debugExit.Count);
        var io = Assert.Single(report.Reasons, r => r.Name == "KVM_EXIT_IO");
        Assert.Equal(Writes + 1, io.Count);
        Assert.Equal(vm.Vcpus[0].ExitCount, report.ExitCount);
        Assert.True(report.RunTime > TimeSpan.Zero);
        Assert.NotNull(report.StartToFirstRun);
        Assert.True(report.StartToFirstRun > TimeSpan.Zero);
        Assert.True(vm.Vcpus[0].Counters.FirstRunProcessCpuTime > TimeSpan.Zero);
    }

    [KvmFact]
    public void The_meter_reports_the_same_counts()
    {
        using var vm = RunPortWriter(out _);
        var seen = new Dictionary<string, long>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter == vm.Metrics.Meter) l.EnableMeasurementEvents(instrument);
            },
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            foreach (var tag in tags)
                if (tag.Key is "device" or "reason") seen[$"{instrument.Name}/{tag.Value}"] = value;
        });
        listener.Start();

        listener.RecordObservableInstruments();

        Assert.Equal(Writes, seen.Single(kv => kv.Key.StartsWith("kvmsharp.vm.device.exits/'counted'", StringComparison.Ordinal)).Value);
        Assert.Equal(Writes + 1, seen["kvmsharp.vm.exits/KVM_EXIT_IO"]);
        Assert.Equal(VmMetrics.MeterName, vm.Metrics.Meter.Name);
    }

    [KvmFact]
    public void Memslot_usage_shows_what_tracking_takes_and_the_meter_agrees()
    {
        using var vm = RunPortWriter(out _);
        var before = vm.MemslotUsage();
        Assert.Equal((before.UserSlots, before.TrackingKernelSlots), (before.KernelSlots, 0));

        // A gfn in the middle of RAM splits its slot into three kernel slots: two more than the user's.
        ulong middle = (vm.Config.MemoryBytes / 2) >> 12;
        vm.PageTracker.AddGfn(middle, Memory.PageTracking.TrackingMode.TrapWrites); // a read-only carve: three kernel pieces
        var tracked = vm.MemslotUsage();
        Assert.Equal(before.UserSlots, tracked.UserSlots);
        Assert.Equal(2, tracked.TrackingKernelSlots);
        Assert.Equal(before.KernelSlots + 2, tracked.KernelSlots);
        Assert.Contains("2 taken by page tracking", tracked.Format());

        var gauges = new Dictionary<string, int>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter == vm.Metrics.Meter) l.EnableMeasurementEvents(instrument);
            },
        };
        listener.SetMeasurementEventCallback<int>((instrument, value, _, _) => gauges[instrument.Name] = value);
        listener.Start();
        listener.RecordObservableInstruments();
        Assert.Equal(tracked.KernelSlots, gauges["kvmsharp.vm.memslots.kernel"]);
        Assert.Equal(2, gauges["kvmsharp.vm.memslots.tracking"]);

        vm.PageTracker.RemoveGfn(middle);
        Assert.Equal(before, vm.MemslotUsage());
    }
}
