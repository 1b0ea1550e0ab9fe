using KvmSharp.Tests.Unit.Systemd;
using KvmSharp.Vmm.Lifecycle;
using KvmSharp.Vmm.Statistics;
using Xunit;

namespace KvmSharp.Tests.Unit.Statistics;

/// <summary>Paused time from a controller's events.</summary>
public sealed class PauseClockTests
{
    [Fact]
    public void Paused_time_counts_from_paused_to_resumed_and_a_pause_under_way_counts_up_to_now()
    {
        var clock = new PauseClock();
        var vm = new FakeVmController("p");
        using var observing = clock.Observe(vm);
        vm.Become(VmState.Running, VmEventKind.Started);
        Assert.Equal(TimeSpan.Zero, clock.Total);

        vm.Become(VmState.Paused, VmEventKind.Paused);
        Thread.Sleep(30);
        var during = clock.Total;
        Assert.True(during >= TimeSpan.FromMilliseconds(25), $"{during}");
        vm.Become(VmState.Running, VmEventKind.Resumed);
        var after = clock.Total;
        Assert.True(after >= during);
        Thread.Sleep(30);
        Assert.Equal(after, clock.Total); // running: it stands still

        vm.Become(VmState.Paused, VmEventKind.Paused);
        vm.Become(VmState.Paused, VmEventKind.Paused); // a second lease: still one pause
        vm.Become(VmState.Running, VmEventKind.Resumed);
        Assert.Equal(2, clock.Pauses);
    }

    [Fact]
    public void Pauses_are_timed_by_when_their_events_happened_not_when_they_were_delivered()
    {
        var clock = new PauseClock();
        var start = DateTimeOffset.UtcNow - TimeSpan.FromSeconds(10);
        clock.OnPaused(start);
        clock.OnRunning(start + TimeSpan.FromSeconds(2.5)); // both delivered just now
        Assert.Equal(TimeSpan.FromSeconds(2.5), clock.Total);
        clock.OnRunning(start + TimeSpan.FromSeconds(5)); // not paused: nothing to add
        Assert.Equal(TimeSpan.FromSeconds(2.5), clock.Total);
    }

    [Fact]
    public void A_vm_already_paused_when_observed_counts_from_then()
    {
        var clock = new PauseClock();
        var vm = new FakeVmController("q");
        vm.Become(VmState.Paused, VmEventKind.Paused);
        using var observing = clock.Observe(vm);
        Assert.Equal(1, clock.Pauses);
        observing.Dispose();
        vm.Become(VmState.Running, VmEventKind.Resumed);
        Assert.Equal(1, clock.Pauses); // no longer observed: the clock did not hear the resume
        Assert.True(clock.Total > TimeSpan.Zero);
    }
}
