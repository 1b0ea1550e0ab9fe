using KvmSharp.Devices.Events;
using KvmSharp.Tests.Unit.Events;
using KvmSharp.Vmm.Lifecycle;
using Xunit;

namespace KvmSharp.Tests.Unit.Lifecycle;

/// <summary>Events in order off the publishing thread; progress checks of vCPUs and the event loop.</summary>
public sealed class VmEventAndProgressTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Events_arrive_in_sequence_order_after_subscribing_and_off_the_publishing_thread()
    {
        var machine = new FakeMachine();
        using var controller = VmControllerTransitionTests.Controller(machine);
        controller.Publish("tracker-attached", "before anyone listened");
        using var events = new EventLog(controller);
        int publisher = 0;
        var thread = new Thread(() =>
        {
            publisher = Environment.CurrentManagedThreadId;
            for (int i = 0; i < 200; i++) controller.Publish(VmEventKind.TrackerAttached, $"t{i}");
        });
        thread.Start();
        thread.Join();
        var seen = events.WaitFor(200);
        Assert.Equal(Enumerable.Range(0, 200).Select(i => $"t{i}"), seen.Select(e => e.Detail));
        Assert.Equal(Enumerable.Range(2, 200).Select(i => (long)i), seen.Select(e => e.Sequence));
        Assert.DoesNotContain(publisher, events.Threads);
    }

    [Fact]
    public async Task An_observer_that_throws_does_not_stop_the_others_and_a_disposed_one_hears_nothing_more()
    {
        var machine = new FakeMachine();
        using var controller = VmControllerTransitionTests.Controller(machine);
        using var thrower = controller.Subscribe(_ => throw new InvalidOperationException("observer bug"));
        var stopped = new EventLog(controller);
        using var events = new EventLog(controller);
        controller.Publish(VmEventKind.GuestPanic, "one");
        events.WaitFor(1);
        stopped.WaitFor(1);
        stopped.Dispose();
        controller.Publish(VmEventKind.GuestPanic, "two");
        events.WaitFor(2);
        Thread.Sleep(20);
        Assert.Single(stopped.Events);
    }

    [Theory]
    [InlineData("")]
    [InlineData("Guest Panic")]
    [InlineData("-x")]
    public async Task Publish_refuses_kinds_that_are_not_lower_case_names(string kind)
    {
        using var controller = VmControllerTransitionTests.Controller(new FakeMachine());
        var refused = Assert.Throws<ArgumentException>(() => controller.Publish(kind, null));
        Assert.Contains("lower-case", refused.Message);
    }

    [Fact]
    public async Task Stalled_vcpus_are_reported_by_the_machine_and_a_healthy_vm_reports_nothing()
    {
        var machine = new FakeMachine();
        using var controller = VmControllerTransitionTests.Controller(machine);
        Assert.True(controller.CheckProgress(TimeSpan.FromSeconds(1)).IsHealthy);
        machine.Stalls.Add("vCPU 1 has been in the exit handler for KVM_EXIT_IO for 3.0 s");
        var progress = controller.CheckProgress(TimeSpan.FromSeconds(1));
        Assert.False(progress.IsHealthy);
        Assert.Equal(machine.Stalls, progress.Stalled);
    }

    [Fact]
    public async Task A_running_event_loop_passes_and_a_wedged_one_is_reported_after_the_threshold()
    {
        using var loop = new EpollEventLoop(new RecordingLogger<EpollEventLoop>(), "test-io");
        var machine = new FakeMachine { EventLoop = loop };
        using var controller = VmControllerTransitionTests.Controller(machine);
        Assert.True(controller.CheckProgress(TimeSpan.FromSeconds(2)).IsHealthy);

        using var release = new ManualResetEventSlim();
        loop.Post(() => release.Wait(Wait)); // a device callback that never returns
        var progress = controller.CheckProgress(TimeSpan.FromMilliseconds(100));
        Assert.Contains(progress.Stalled, s => s.Contains("event loop"));
        release.Set();
        // The outstanding no-op runs once the loop is free, and the next check passes.
        var deadline = DateTime.UtcNow + Wait;
        while (!controller.CheckProgress(TimeSpan.FromMilliseconds(500)).IsHealthy)
            Assert.True(DateTime.UtcNow < deadline, "the event loop did not recover");
    }
}
