using System.Diagnostics;
using KvmSharp.Devices.Bus;
using KvmSharp.Kvm.Interop;
using KvmSharp.Tests.Unit.Vcpus;
using KvmSharp.Vmm.Statistics;
using KvmSharp.Vmm.Vcpus;
using Xunit;

namespace KvmSharp.Tests.Unit.Statistics;

/// <summary>Per-vCPU exit counters and their aggregation into one report (no KVM: exits are hand-filled kvm_run pages).</summary>
public sealed unsafe class ExitStatisticsReportTests : IDisposable
{
    private readonly KvmRunBuffer _run = new();
    private readonly DeviceBus _pio = new("pio");
    private readonly DeviceBus _mmio = new("mmio");
    private readonly ExitDispatcher _dispatcher;

    public ExitStatisticsReportTests()
    {
        _pio.Register(0x3f8, 8, new RecordingIoDevice(0), "uart");
        _pio.Register(0x80, 1, new RecordingIoDevice(0), "post");
        _mmio.Register(0xd000_0000, 0x1000, new RecordingIoDevice(0), "regs");
        _dispatcher = new ExitDispatcher(_pio, _mmio);
    }

    public void Dispose() => _run.Dispose();

    // One exit as VcpuRunner handles it: KVM_RUN returned, the dispatcher ran, the handler time is charged.
    private void Exit(VcpuExitCounters counters)
    {
        long started = counters.RunStarting();
        long handlerStart = counters.RunReturned(started);
        _dispatcher.Dispatch(counters.VcpuId, _run.Run, counters);
        counters.ExitHandled(_run.Run->exit_reason, handlerStart);
    }

    private void PortOut(VcpuExitCounters counters, ushort port, int times)
    {
        for (int i = 0; i < times; i++)
        {
            _run.SetExitReason(KvmExitReason.KVM_EXIT_IO);
            _run.SetIo(KvmRunIoDirection.KVM_EXIT_IO_OUT, 1, port, count: 1);
            Exit(counters);
        }
    }

    private void MmioRead(VcpuExitCounters counters, ulong gpa, int times)
    {
        for (int i = 0; i < times; i++)
        {
            _run.SetExitReason(KvmExitReason.KVM_EXIT_MMIO);
            _run.SetMmio(gpa, 4, isWrite: false);
            Exit(counters);
        }
    }

    private ExitStatisticsReport Aggregate(params VcpuExitCounters[] counters) => ExitStatisticsReport.Aggregate(counters, _pio, _mmio);

    [Fact]
    public void Counts_from_every_vcpu_are_summed_per_reason_and_per_range()
    {
        var cpu0 = new VcpuExitCounters(0);
        var cpu1 = new VcpuExitCounters(1);
        PortOut(cpu0, 0x3f8, 5);
        PortOut(cpu1, 0x3fd, 7);
        PortOut(cpu1, 0x80, 2);
        PortOut(cpu0, 0x1234, 3);      // nobody's port
        MmioRead(cpu0, 0xd000_0010, 4);
        MmioRead(cpu1, 0xe000_0000, 1); // nobody's MMIO
        _run.SetExitReason(KvmExitReason.KVM_EXIT_HLT);
        Exit(cpu1);

        var report = Aggregate(cpu0, cpu1);

        Assert.Equal(2, report.Vcpus);
        Assert.Equal(23, report.ExitCount);
        Assert.Equal(23, report.RunCount);
        Assert.Equal(new[] { ("KVM_EXIT_IO", 17L), ("KVM_EXIT_MMIO", 5L), ("KVM_EXIT_HLT", 1L) },
            report.Reasons.Select(r => (r.Name, r.Count)));
        Assert.Equal(new[]
        {
            ("pio", "'uart' [0x3f8..0x3ff]", 12L),
            ("mmio", "'regs' [0xd0000000..0xd0000fff]", 4L),
            ("pio", "unclaimed", 3L),
            ("pio", "'post' [0x80..0x80]", 2L),
            ("mmio", "unclaimed", 1L),
        }, report.Ranges.Select(r => (r.Group, r.Name, r.Count)));
    }

    [Fact]
    public void Handler_time_per_range_adds_up_to_the_time_of_the_exits_that_reached_a_bus()
    {
        var cpu = new VcpuExitCounters(0);
        PortOut(cpu, 0x3f8, 50);
        MmioRead(cpu, 0xd000_0000, 50);
        _run.SetExitReason(KvmExitReason.KVM_EXIT_HLT);
        Exit(cpu);

        var report = Aggregate(cpu);

        TimeSpan reasonsOnBuses = report.Reasons.Where(r => r.Name is "KVM_EXIT_IO" or "KVM_EXIT_MMIO").Aggregate(TimeSpan.Zero, (t, r) => t + r.HandlerTime);
        TimeSpan ranges = report.Ranges.Aggregate(TimeSpan.Zero, (t, r) => t + r.HandlerTime);
        Assert.True(reasonsOnBuses > TimeSpan.Zero);
        Assert.Equal(reasonsOnBuses, ranges);
        Assert.True(report.HandlerTime >= ranges);
    }

    [Fact]
    public void Mmio_taken_by_the_interceptor_is_its_own_row()
    {
        var dispatcher = new ExitDispatcher(_pio, _mmio) { MmioInterceptor = new ClaimingMmioInterceptor(0xd000_0000) };
        var cpu = new VcpuExitCounters(0);
        _run.SetExitReason(KvmExitReason.KVM_EXIT_MMIO);
        _run.SetMmio(0xd000_0008, 4, isWrite: true, [1, 2, 3, 4]);
        long handlerStart = cpu.RunReturned(cpu.RunStarting());
        dispatcher.Dispatch(0, _run.Run, cpu);
        cpu.ExitHandled(_run.Run->exit_reason, handlerStart);

        var row = Assert.Single(Aggregate(cpu).Ranges);
        Assert.Equal(("mmio", "page-track (intercepted)", 1L), (row.Group, row.Name, row.Count));
    }

    [Fact]
    public void Unknown_and_out_of_range_exit_reasons_are_counted_not_lost()
    {
        var cpu = new VcpuExitCounters(0);
        foreach (uint reason in new uint[] { 50, 50, 1000, uint.MaxValue })
        {
            _run.SetExitReason(reason);
            Exit(cpu);
        }

        var report = Aggregate(cpu);

        Assert.Equal(new[] { ("exit reason 50", 2L), ("exit reasons >= 63", 2L) }, report.Reasons.Select(r => (r.Name, r.Count)));
        Assert.Empty(report.Ranges);
    }

    [Fact]
    public void Range_ids_beyond_the_preallocated_slots_share_one_row()
    {
        var bus = new DeviceBus("pio");
        var dispatcher = new ExitDispatcher(bus, _mmio);
        for (int i = 0; i <= VcpuExitCounters.RangeSlots; i++) bus.Register((ulong)(0x1000 + i), 1, new RecordingIoDevice(0), $"port{i}");
        var cpu = new VcpuExitCounters(0);
        _run.SetExitReason(KvmExitReason.KVM_EXIT_IO);
        _run.SetIo(KvmRunIoDirection.KVM_EXIT_IO_OUT, 1, (ushort)(0x1000 + VcpuExitCounters.RangeSlots), count: 1);
        long handlerStart = cpu.RunReturned(cpu.RunStarting());
        dispatcher.Dispatch(0, _run.Run, cpu);
        cpu.ExitHandled(_run.Run->exit_reason, handlerStart);

        var row = Assert.Single(ExitStatisticsReport.Aggregate([cpu], bus, _mmio).Ranges);
        Assert.Equal($"ranges with id >= {VcpuExitCounters.RangeSlots}", row.Name);
    }

    [Fact]
    public void Start_to_first_run_is_measured_from_the_process_start_given()
    {
        var cpu = new VcpuExitCounters(0);
        var start = DateTime.UtcNow - TimeSpan.FromSeconds(3);
        Assert.Null(ExitStatisticsReport.Aggregate([cpu], _pio, _mmio, start).StartToFirstRun); // no KVM_RUN yet

        cpu.RunStarting();
        var report = ExitStatisticsReport.Aggregate([cpu], _pio, _mmio, start);

        Assert.InRange(report.StartToFirstRun!.Value, TimeSpan.FromSeconds(2.9), TimeSpan.FromSeconds(4));
        long unixNow = (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100;
        Assert.InRange(report.FirstRunUnixNanoseconds!.Value, unixNow - 1_000_000_000, unixNow);
    }

    [Fact]
    public void The_table_has_a_line_per_reason_and_range_and_the_totals()
    {
        var cpu = new VcpuExitCounters(0);
        PortOut(cpu, 0x3f8, 3);
        MmioRead(cpu, 0xd000_0000, 2);

        string table = Aggregate(cpu).Format();

        var lines = table.TrimEnd().Split('\n');
        Assert.StartsWith("exit statistics: 1 vCPU(s), 5 exits", lines[0]);
        Assert.Contains(lines, l => l.Contains("KVM_EXIT_IO") && l.Contains(" 3 "));
        Assert.Contains(lines, l => l.Contains("pio") && l.Contains("'uart' [0x3f8..0x3ff]") && l.Contains(" 3 "));
        Assert.Contains(lines, l => l.Contains("mmio") && l.Contains("'regs'") && l.Contains(" 2 "));
        Assert.Equal(2 + 2 + 2, lines.Length); // title, header, 2 reasons, 2 ranges
    }

    [Fact]
    public void Guest_resident_memory_is_the_rss_of_the_mappings_inside_guest_ram()
    {
        string[] smaps =
        [
            "7f0000000000-7f0000200000 rw-p 00000000 00:00 0",
            "Size:               2048 kB",
            "Rss:                2048 kB",
            "7f0000200000-7f0000400000 rw-p 00000000 00:00 0",
            "Rss:                 512 kB",
            "7f1000000000-7f1000001000 r-xp 00000000 08:01 42     /usr/bin/kvmsharp",
            "Rss:                   4 kB",
        ];
        long resident = ProcessMemory.GuestResident(smaps, [(0x7f00_0000_0000UL, 0x40_0000UL)]);
        Assert.Equal((2048 + 512) * 1024L, resident);
    }

    [Fact]
    public void The_startup_timeline_lists_each_step_with_its_duration()
    {
        var timeline = new StartupTimeline();
        timeline.Mark("one");
        Thread.Sleep(20);
        timeline.Mark("two");

        string text = timeline.Format(DateTime.UtcNow - TimeSpan.FromSeconds(1), Stopwatch.GetTimestamp());

        var steps = System.Text.RegularExpressions.Regex.Matches(text, @"\+([0-9.]+) ([a-zA-Z_ ]+?)(?= \+|$)")
            .Select(m => (double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), m.Groups[2].Value)).ToList();
        Assert.StartsWith("start-up (ms): process start", text);
        Assert.Equal(new[] { "one", "two", "first KVM_RUN" }, steps.Select(s => s.Item2));
        Assert.InRange(steps[0].Item1, 900, 1500);   // process start -> one
        Assert.InRange(steps[1].Item1, 19, 1000);    // one -> two, after a 20 ms sleep
    }
}
