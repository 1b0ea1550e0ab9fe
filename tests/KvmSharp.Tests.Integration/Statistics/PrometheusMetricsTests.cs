using KvmSharp.Devices.Bus;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Lifecycle;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Statistics;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Statistics;

/// <summary>A real VM's exits and tracked writes in the Prometheus text GET /metrics serves (PrometheusText.Collect).</summary>
public sealed class PrometheusMetricsTests
{
    private const ushort CountedPort = 0xE0;
    private const int Writes = 321;
    private const ulong TrackedPage = 0x200000;
    private const int TrackedStores = 5;

    private sealed class NullDevice : IBusDevice
    {
        public void Read(ulong offset, Span<byte> data) => data.Clear();
        public void Write(ulong offset, ReadOnlySpan<byte> data) { }
    }

    [KvmFact]
    public void A_real_vms_exits_by_reason_device_exits_run_time_and_tracked_writes_appear()
    {
        var image = TestGuest.LongMode(a =>
        {
            var loop = a.CreateLabel();
            a.mov(ecx, Writes);
            a.Label(ref loop);
            a.@out((byte)CountedPort, al);
            a.dec(ecx);
            a.jnz(loop);
            a.mov(rdi, TrackedPage);
            for (int i = 0; i < TrackedStores; i++) a.mov(__dword_ptr[rdi + 4 * i], i);
            TestGuest.ExitWith(a, 0);
        });
        using var vm = TestGuest.Create(image);
        vm.PortBus.Register(CountedPort, 1, new NullDevice(), "counted");
        vm.PageTracker.AddGfn(TrackedPage >> 12, TrackingMode.TrapWrites);
        Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm, TimeSpan.FromSeconds(60)));

        string text = PrometheusText.Collect(vm.Metrics);
        var families = PrometheusTextParser.Parse(text);

        var report = vm.CollectExitStatistics();
        var exits = families["kvmsharp_vm_exits_total"];
        Assert.Equal("counter", exits.Type);
        Assert.Equal(report.Reasons.Single(r => r.Name == "KVM_EXIT_IO").Count, exits.Samples.Single(s => s.Labels["reason"] == "KVM_EXIT_IO").Value);
        Assert.True(exits.Samples.Single(s => s.Labels["reason"] == "KVM_EXIT_IO").Value >= Writes + 1, text);
        Assert.Equal(report.ExitCount, exits.Samples.Sum(s => s.Value));
        var counted = families["kvmsharp_vm_device_exits_total"].Samples.Single(s => s.Labels["device"].StartsWith("'counted'", StringComparison.Ordinal));
        Assert.Equal(("pio", (double)Writes), (counted.Labels["bus"], counted.Value));
        Assert.True(Assert.Single(families["kvmsharp_vm_run_time_seconds_total"].Samples).Value > 0, text);
        Assert.Equal(TrackedStores, Assert.Single(families["kvmsharp_vm_page_track_writes_total"].Samples).Value);
        Assert.Equal(0, Assert.Single(families["kvmsharp_vm_page_track_notifier_faults_total"].Samples).Value);
        Assert.Equal(0, Assert.Single(families["kvmsharp_vm_pause_time_seconds_total"].Samples).Value);
        Assert.Contains("# TYPE kvmsharp_vm_exits_total counter\n", text);
    }

    [KvmFact]
    public async Task Pause_time_from_the_controllers_pauses_appears()
    {
        var gate = new BlockingDevice(1) { GiveUpAfter = TimeSpan.FromSeconds(30) };
        using var controller = new VmController(TestGuest.Create(TestGuest.LongMode(a =>
        {
            a.mov(edx, CountedPort);
            a.@in(eax, dx); // blocks until the test releases it
            var spin = a.CreateLabel();
            a.Label(ref spin);
            a.pause();
            a.jmp(spin); // runs (without exits) until the test stops it
        }), memory: 4UL << 20), "paused");
        controller.Machine.PortBus.Register(CountedPort, 4, gate, "gate");
        var events = new System.Collections.Concurrent.ConcurrentQueue<VmEvent>();
        using var watching = controller.Subscribe(events.Enqueue);
        try
        {
            await controller.StartAsync().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(gate.WaitEntered(TimeSpan.FromSeconds(30)));
            var pausing = controller.PauseAsync("test");
            gate.Release(); // the vCPU completes its read, then parks
            using (await pausing.WaitAsync(TimeSpan.FromSeconds(30))) Thread.Sleep(200);
        }
        finally
        {
            gate.Release();
        }
        await controller.StopAsync("the test is done").WaitAsync(TimeSpan.FromSeconds(30));
        await controller.Completion.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(SpinWait.SpinUntil(() => controller.Machine.Metrics.Pauses.Pauses == 1, TimeSpan.FromSeconds(10))); // events arrive off-thread

        var families = PrometheusTextParser.Parse(PrometheusText.Collect(controller.Machine.Metrics));

        Assert.Equal(1, Assert.Single(families["kvmsharp_vm_pauses_total"].Samples).Value);
        double paused = Assert.Single(families["kvmsharp_vm_pause_time_seconds_total"].Samples).Value;
        Assert.True(paused is >= 0.15 and <= 30, $"paused {paused} s; events: {string.Join(", ", events.Select(e => $"{e.Kind}@{e.Time:HH:mm:ss.ffffff}"))}");
    }
}
