using KvmSharp.Vmm.Lifecycle;
using KvmSharp.Vmm.Vcpus;
using Xunit;

namespace KvmSharp.Tests.Unit.Lifecycle;

/// <summary>Pause leases: one per holder, each released once and only by its holder.</summary>
public sealed class PauseLeaseTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan Short = TimeSpan.FromMilliseconds(100);

    [Fact]
    public async Task An_api_resume_never_ends_a_carve_pause()
    {
        var machine = new FakeMachine();
        using var controller = VmControllerTransitionTests.Controller(machine);
        await controller.StartAsync().WaitAsync(Wait);
        Assert.True(machine.Pauses.TryPause("page-track carve", Short, out var carve, out _));
        var api = (await controller.PauseAsync("api").WaitAsync(Wait));
        Assert.All(machine.Vcpus, v => Assert.Equal(2, v.Depth));

        api.Dispose();
        Assert.Equal(VmState.Running, controller.State); // the controller's holders are gone
        Assert.All(machine.Vcpus, v => Assert.Equal(1, v.Depth)); // the carve still holds the vCPUs
        api.Dispose(); // twice changes nothing
        Assert.All(machine.Vcpus, v => Assert.Equal(1, v.Depth));

        carve.Dispose();
        Assert.All(machine.Vcpus, v => Assert.Equal(0, v.Depth));
    }

    [Fact]
    public async Task The_vm_stays_paused_until_every_holder_has_resumed()
    {
        var machine = new FakeMachine();
        using var controller = VmControllerTransitionTests.Controller(machine);
        using var events = new EventLog(controller);
        await controller.StartAsync().WaitAsync(Wait);
        var api = (await controller.PauseAsync("api").WaitAsync(Wait));
        var snapshot = (await controller.PauseAsync("snapshot").WaitAsync(Wait));
        Assert.Equal(["api", "snapshot"], machine.Pauses.Holders);
        api.Dispose();
        Assert.Equal(VmState.Paused, controller.State);
        Assert.All(machine.Vcpus, v => Assert.True(v.IsPaused));
        snapshot.Dispose();
        Assert.Equal(VmState.Running, controller.State);
        Assert.All(machine.Vcpus, v => Assert.False(v.IsPaused));
        var seen = events.WaitFor(3);
        Assert.Equal([VmEventKind.Started, VmEventKind.Paused, VmEventKind.Resumed], seen.Select(e => e.Kind));
        Assert.Equal("api", seen[1].Detail);
        Assert.Equal("snapshot", seen[2].Detail);
    }

    [Fact]
    public async Task A_pause_tells_each_vcpu_clock_once_when_the_vm_becomes_paused()
    {
        var machine = new FakeMachine();
        using var controller = VmControllerTransitionTests.Controller(machine);
        await controller.StartAsync().WaitAsync(Wait);
        var first = (await controller.PauseAsync("api").WaitAsync(Wait));
        var second = (await controller.PauseAsync("other").WaitAsync(Wait));
        Assert.All(machine.Vcpus, v => Assert.Equal(1, v.ClockStops));
        first.Dispose();
        second.Dispose();
    }

    [Fact]
    public async Task A_vcpu_that_does_not_park_fails_the_pause_and_leaves_nothing_paused()
    {
        var machine = new FakeMachine();
        machine.Vcpus[1].Stuck = true;
        using var controller = VmControllerTransitionTests.Controller(machine);
        using var events = new EventLog(controller);
        await controller.StartAsync().WaitAsync(Wait);
        var failure = await Assert.ThrowsAsync<TimeoutException>(() => controller.PauseAsync("api").WaitAsync(Wait));
        Assert.Contains("vCPU 1 is stuck", failure.Message);
        Assert.Equal(VmState.Running, controller.State);
        Assert.All(machine.Vcpus, v => Assert.Equal(0, v.Depth));
        Assert.Equal(0, machine.Pauses.HeldCount);
        Assert.Equal([VmEventKind.Started], events.WaitFor(1).Select(e => e.Kind));
    }

    [Fact]
    public async Task A_vcpu_added_while_leases_are_held_starts_paused_under_each_and_each_releases_it_once()
    {
        var gate = new VcpuPauseGate();
        var first = new FakeVcpu(0);
        gate.Add(first);
        Assert.True(gate.TryPause("a", Short, out var a, out _));
        Assert.True(gate.TryPause("b", Short, out var b, out _));
        var late = new FakeVcpu(1);
        gate.Add(late);
        Assert.Equal(2, late.Depth);
        a.Dispose();
        Assert.Equal(1, late.Depth);
        Assert.Equal(1, first.Depth);
        b.Dispose();
        b.Dispose();
        Assert.Equal(0, late.Depth);
        Assert.Equal(0, first.Depth);
        Assert.Empty(gate.Holders);
    }

    [Fact]
    public async Task Ended_vcpus_count_as_parked_and_are_not_held()
    {
        var gate = new VcpuPauseGate();
        var ended = new FakeVcpu(0) { Ended = true, Stuck = true };
        var running = new FakeVcpu(1);
        gate.Add(ended);
        gate.Add(running);
        Assert.True(gate.TryPause("carve", Short, out var lease, out string? failure), failure);
        Assert.Equal(0, ended.Depth);
        Assert.Equal(1, running.Depth);
        lease.Dispose();
        Assert.Equal(0, running.Depth);
    }

    [Fact]
    public async Task A_partial_pause_keeps_its_lease_and_names_the_late_vcpus()
    {
        var gate = new VcpuPauseGate();
        var stuck = new FakeVcpu(3) { Stuck = true };
        gate.Add(new FakeVcpu(0));
        gate.Add(stuck);
        using (var lease = gate.Pause("describe", Short, out var late))
        {
            Assert.Equal(["vCPU 3 is stuck (test)"], late);
            Assert.Equal(1, stuck.Depth);
        }
        Assert.Equal(0, stuck.Depth);
    }

    [Fact]
    public async Task Concurrent_holders_taking_and_releasing_leave_every_count_at_zero()
    {
        var machine = new FakeMachine(vcpus: 4);
        using var controller = VmControllerTransitionTests.Controller(machine);
        await controller.StartAsync().WaitAsync(Wait);
        var api = Task.Run(async () =>
        {
            for (int i = 0; i < 300; i++) (await controller.PauseAsync("api")).Dispose();
        });
        var carves = Task.Run(() =>
        {
            for (int i = 0; i < 3000; i++)
            {
                Assert.True(machine.Pauses.TryPause("page-track carve", Short, out var lease, out _));
                lease.Dispose();
            }
        });
        await Task.WhenAll(api, carves).WaitAsync(Wait);
        Assert.All(machine.Vcpus, v => Assert.Equal(0, v.Depth));
        Assert.Equal(VmState.Running, controller.State);
        Assert.Equal(0, machine.Pauses.HeldCount);
    }
}
