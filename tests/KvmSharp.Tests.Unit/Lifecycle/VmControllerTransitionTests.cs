using KvmSharp.Vmm.Lifecycle;
using KvmSharp.Vmm.Machine;
using Xunit;

namespace KvmSharp.Tests.Unit.Lifecycle;

/// <summary>The controller's state machine on a fake machine: every request in every state, allowed or refused.</summary>
public sealed class VmControllerTransitionTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    internal static VmController Controller(FakeMachine machine) => new(machine, null, "test-vm", null) { PauseTimeout = TimeSpan.FromMilliseconds(200) };

    // Bring a fresh controller to a state through its own requests (Failed: the guest faults while running).
    private static async Task<(VmController Controller, FakeMachine Machine, IPauseLease? Lease)> In(VmState state)
    {
        var machine = new FakeMachine();
        var controller = Controller(machine);
        IPauseLease? lease = null;
        if (state != VmState.Created) await controller.StartAsync().WaitAsync(Wait);
        switch (state)
        {
            case VmState.Paused:
                lease = (await controller.PauseAsync("api").WaitAsync(Wait));
                break;
            case VmState.Stopped:
                await controller.StopAsync("test").WaitAsync(Wait);
                break;
            case VmState.Failed:
                machine.End(VmOutcome.Fault("vCPU 0: triple fault", "report"));
                await controller.Completion.WaitAsync(Wait);
                break;
        }
        Assert.Equal(state, controller.State);
        return (controller, machine, lease);
    }

    public static TheoryData<VmState, string, VmState?> Table => new()
    {
        // state, request, state after (null: refused with VmTransitionException)
        { VmState.Created, "start", VmState.Running },
        { VmState.Created, "pause", null },
        { VmState.Created, "ctrl-alt-del", null },
        { VmState.Created, "stop", VmState.Stopped },
        { VmState.Running, "start", null },
        { VmState.Running, "pause", VmState.Paused },
        { VmState.Running, "ctrl-alt-del", VmState.Running },
        { VmState.Running, "stop", VmState.Stopped },
        { VmState.Paused, "start", null },
        { VmState.Paused, "pause", VmState.Paused },
        { VmState.Paused, "ctrl-alt-del", null },
        { VmState.Paused, "stop", VmState.Stopped },
        { VmState.Paused, "resume", VmState.Running },
        { VmState.Stopped, "start", null },
        { VmState.Stopped, "pause", null },
        { VmState.Stopped, "ctrl-alt-del", null },
        { VmState.Stopped, "stop", VmState.Stopped },
        { VmState.Failed, "start", null },
        { VmState.Failed, "pause", null },
        { VmState.Failed, "ctrl-alt-del", null },
        { VmState.Failed, "stop", VmState.Failed },
    };

    [Theory]
    [MemberData(nameof(Table))]
    public async Task Each_request_in_each_state_moves_as_the_table_says_or_is_refused_changing_nothing(VmState state, string request, VmState? after)
    {
        var (controller, machine, lease) = await In(state);
        using var _ = controller;
        var events = new EventLog(controller);
        int starts = machine.Starts, ctrlAltDels = machine.CtrlAltDels, held = machine.Pauses.HeldCount;
        var outcome = machine.Outcome;

        Task action = request switch
        {
            "start" => controller.StartAsync(),
            "pause" => controller.PauseAsync("second"),
            "ctrl-alt-del" => controller.SendCtrlAltDelAsync(),
            "stop" => controller.StopAsync("test"),
            "resume" => Task.Run(() => lease!.Dispose()),
            _ => throw new ArgumentException(request),
        };

        if (after is null)
        {
            var transition = await Assert.ThrowsAsync<VmTransitionException>(() => action.WaitAsync(Wait));
            Assert.Equal(state, transition.State);
            Assert.Equal(request, transition.Request);
            Assert.Contains(state.ToString(), transition.Message);
            Assert.Equal(state, controller.State);
            Assert.Equal(starts, machine.Starts);
            Assert.Equal(ctrlAltDels, machine.CtrlAltDels);
            Assert.Equal(held, machine.Pauses.HeldCount);
            Assert.Same(outcome, machine.Outcome);
            Thread.Sleep(20);
            Assert.Empty(events.Events);
            return;
        }
        await action.WaitAsync(Wait);
        Assert.Equal(after, controller.State);
        if (request == "ctrl-alt-del") Assert.Equal(ctrlAltDels + 1, machine.CtrlAltDels);
        if (request == "start") Assert.Equal(starts + 1, machine.Starts);
        string? expectedEvent = (state, after) switch
        {
            (VmState.Created, VmState.Running) => VmEventKind.Started,
            (VmState.Running, VmState.Paused) => VmEventKind.Paused,
            (VmState.Paused, VmState.Running) => VmEventKind.Resumed,
            (not VmState.Stopped, VmState.Stopped) => VmEventKind.Shutdown,
            _ => null,
        };
        if (expectedEvent is null)
        {
            Thread.Sleep(20);
            Assert.Empty(events.Events);
        }
        else Assert.Equal([expectedEvent], events.WaitFor(1).Select(e => e.Kind));
    }

    public static TheoryData<VmExitKind, VmState, string> Endings => new()
    {
        { VmExitKind.GuestExit, VmState.Stopped, VmEventKind.Shutdown },
        { VmExitKind.PowerOff, VmState.Stopped, VmEventKind.Shutdown },
        { VmExitKind.Reboot, VmState.Stopped, VmEventKind.Reboot },
        { VmExitKind.Expected, VmState.Stopped, VmEventKind.Shutdown },
        { VmExitKind.Halted, VmState.Stopped, VmEventKind.Shutdown },
        { VmExitKind.Stopped, VmState.Stopped, VmEventKind.Shutdown },
        { VmExitKind.Timeout, VmState.Failed, VmEventKind.Fault },
        { VmExitKind.Fault, VmState.Failed, VmEventKind.Fault },
        { VmExitKind.Error, VmState.Failed, VmEventKind.Fault },
    };

    [Theory]
    [MemberData(nameof(Endings))]
    public async Task The_vm_ending_on_its_own_maps_its_outcome_to_the_final_state_and_event(VmExitKind kind, VmState state, string eventKind)
    {
        var machine = new FakeMachine();
        using var controller = Controller(machine);
        using var events = new EventLog(controller);
        await controller.StartAsync().WaitAsync(Wait);
        var outcome = new VmOutcome(kind, 3, $"ended: {kind}");
        // From another thread, as a vCPU thread would.
        var vcpuThread = new Thread(() => machine.End(outcome));
        vcpuThread.Start();
        vcpuThread.Join();
        await controller.Completion.WaitAsync(Wait);
        Assert.Same(outcome, await controller.Completion);
        Assert.Equal(state, controller.State);
        var seen = events.WaitFor(2);
        Assert.Equal([VmEventKind.Started, eventKind], seen.Select(e => e.Kind));
        Assert.Equal($"ended: {kind}", seen[1].Detail);
        Assert.Equal([1L, 2L], seen.Select(e => e.Sequence));
    }

    [Fact]
    public async Task A_vm_ended_while_paused_is_final_and_its_leases_release_without_a_resume()
    {
        var machine = new FakeMachine();
        using var controller = Controller(machine);
        using var events = new EventLog(controller);
        await controller.StartAsync().WaitAsync(Wait);
        var lease = (await controller.PauseAsync("api").WaitAsync(Wait));
        await controller.StopAsync("test").WaitAsync(Wait);
        Assert.Equal(VmState.Stopped, controller.State);
        lease.Dispose();
        Assert.Equal(VmState.Stopped, controller.State);
        Assert.All(machine.Vcpus, v => Assert.Equal(0, v.Depth));
        Assert.Equal([VmEventKind.Started, VmEventKind.Paused, VmEventKind.Shutdown], events.WaitFor(3).Select(e => e.Kind));
        Thread.Sleep(20);
        Assert.Equal(3, events.Events.Count);
    }

    [Fact]
    public async Task Ctrl_alt_del_without_a_keyboard_is_refused_with_the_reason()
    {
        var machine = new FakeMachine { HasKeyboard = false };
        using var controller = Controller(machine);
        await controller.StartAsync().WaitAsync(Wait);
        var refused = await Assert.ThrowsAsync<VmTransitionException>(() => controller.SendCtrlAltDelAsync().WaitAsync(Wait));
        Assert.Contains("keyboard", refused.Message);
        Assert.Equal(VmState.Running, controller.State);
    }

    [Fact]
    public async Task A_start_that_fails_leaves_the_vm_failed_and_the_error_with_the_caller()
    {
        var machine = new FakeMachine { StartFailure = new InvalidOperationException("no threads") };
        using var controller = Controller(machine);
        var failure = await Assert.ThrowsAsync<InvalidOperationException>(() => controller.StartAsync().WaitAsync(Wait));
        Assert.Equal("no threads", failure.Message);
        Assert.Equal(VmState.Failed, controller.State);
        await controller.Completion.WaitAsync(Wait);
        Assert.Equal(VmExitKind.Error, (await controller.Completion).Kind);
    }

    [Fact]
    public async Task A_request_cancelled_before_it_is_applied_changes_nothing()
    {
        var machine = new FakeMachine();
        using var controller = Controller(machine);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        var start = controller.StartAsync(cancelled.Token);
        Assert.True(start.IsCanceled);
        Assert.Equal(VmState.Created, controller.State);
        Assert.Equal(0, machine.Starts);
    }

    [Fact]
    public async Task Ids_are_stable_and_checked()
    {
        var machine = new FakeMachine();
        using var given = Controller(machine);
        Assert.Equal("test-vm", given.Id);
        using var random = new VmController(new FakeMachine(), null, null, null);
        Assert.Matches("^[0-9a-f]{8}$", random.Id);
        Assert.Equal(random.Id, random.Id);
        var bad = Assert.Throws<ArgumentException>(() => new VmController(new FakeMachine(), null, "no spaces", null));
        Assert.Contains("no spaces", bad.Message);
    }

    [Fact]
    public async Task Dispose_stops_the_vm_disposes_the_machine_and_refuses_later_requests()
    {
        var machine = new FakeMachine();
        var controller = Controller(machine);
        using var events = new EventLog(controller);
        await controller.StartAsync().WaitAsync(Wait);
        controller.Dispose();
        Assert.True(machine.Disposed);
        Assert.Equal(VmState.Stopped, controller.State);
        Assert.Equal([VmEventKind.Started, VmEventKind.Shutdown], events.WaitFor(2).Select(e => e.Kind));
        Assert.Throws<ObjectDisposedException>(() => { _ = controller.StartAsync(); });
        controller.Dispose(); // twice is harmless
    }
}
