using KvmSharp.Hosting;
using KvmSharp.Systemd;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Tests.Unit.Events;
using KvmSharp.Vmm.Lifecycle;
using KvmSharp.Vmm.Machine;
using Microsoft.Extensions.Hosting.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace KvmSharp.Tests.Unit.Systemd;

/// <summary>
/// What the notifier tells the service manager as a (fake) controller goes through its states, received on a real
/// datagram socket. The real VM and the real binary are in the integration tests (SystemdNotifyTests).
/// </summary>
public sealed class SystemdNotifyServiceTests : IDisposable
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    private readonly NotifyListener _listener = new();
    private readonly SystemdNotifySocket _socket;
    private readonly ApplicationLifetime _lifetime = new(NullLogger<ApplicationLifetime>.Instance);
    private readonly ActiveVm _active = new();
    private readonly RecordingLogger<SystemdNotifyService> _log = new();
    private SystemdNotifyService? _service;

    public SystemdNotifyServiceTests() => _socket = SystemdNotifySocket.Open(_listener.Address)!;

    public void Dispose()
    {
        _service?.Dispose();
        _socket.Dispose();
        _listener.Dispose();
    }

    private SystemdNotifyService Start(SystemdReadiness readiness = SystemdReadiness.WhenVmRuns, SystemdWatchdog? watchdog = null, ActiveVm? active = null)
    {
        _service = new SystemdNotifyService(_socket, watchdog, readiness, active ?? _active, _lifetime, _log);
        Assert.True(_service.StartAsync(CancellationToken.None).IsCompletedSuccessfully); // it starts synchronously
        return _service;
    }

    private List<string> Assignments() => _listener.Assignments.Select(a => a.Assignment).ToList();

    private void AwaitAssignment(string assignment) =>
        Assert.True(_listener.WaitFor(a => a == assignment, Wait), $"no '{assignment}' in:\n{_listener.Describe()}");

    [Fact]
    public void Ready_comes_when_the_vm_runs_not_when_the_host_has_started()
    {
        Start();
        var vm = new FakeVmController("vm-1");
        _lifetime.NotifyStarted();
        _active.Set(vm);
        AwaitAssignment("STATUS=booting VM vm-1");
        Assert.DoesNotContain("READY=1", Assignments());

        vm.Become(VmState.Running, VmEventKind.Started);

        AwaitAssignment("READY=1");
        var sent = Assignments();
        Assert.True(sent.IndexOf("STATUS=booting VM vm-1") < sent.IndexOf("READY=1"), _listener.Describe());
        Assert.Contains("STATUS=running VM vm-1", sent);
    }

    [Fact]
    public void A_vm_already_running_when_the_notifier_starts_is_ready_at_once()
    {
        var vm = new FakeVmController("early");
        _active.Set(vm);
        vm.Become(VmState.Running, VmEventKind.Started); // before anyone listened

        Start();

        AwaitAssignment("READY=1");
        Assert.Contains("STATUS=running VM early", Assignments());
    }

    [Fact]
    public void Pause_resume_stop_and_the_reason_it_ended_become_status_lines_and_stopping()
    {
        Start();
        var vm = new FakeVmController("vm-2");
        _active.Set(vm);
        vm.Become(VmState.Running, VmEventKind.Started);
        vm.Become(VmState.Paused, VmEventKind.Paused);
        AwaitAssignment("STATUS=paused VM vm-2");
        vm.Become(VmState.Running, VmEventKind.Resumed);

        _lifetime.StopApplication();
        AwaitAssignment("STOPPING=1");
        vm.End(VmOutcome.Stopped("the host is shutting down"));
        _active.Set(null);

        AwaitAssignment("STATUS=ended: stopped: the host is shutting down");
        var sent = Assignments();
        Assert.Equal(["STATUS=booting VM vm-2", "STATUS=running VM vm-2", "READY=1", "STATUS=running VM vm-2",
                      "STATUS=paused VM vm-2", "STATUS=running VM vm-2", "STOPPING=1", "STATUS=stopping",
                      "STATUS=ended: stopped: the host is shutting down"], sent);
    }

    [Fact]
    public void A_reason_spanning_lines_stays_one_assignment()
    {
        Start();
        var vm = new FakeVmController("vm-3");
        _active.Set(vm);
        vm.Become(VmState.Failed, VmEventKind.Fault, "triple fault\nRIP=0x1000");

        AwaitAssignment("STATUS=failed: triple fault RIP=0x1000");
        Assert.DoesNotContain("READY=1", Assignments());
    }

    [Fact]
    public void With_wait_for_start_ready_comes_when_the_host_has_started_and_no_vm_exists()
    {
        Start(SystemdReadiness.WhenHostStarts);
        Assert.Empty(_listener.Messages);

        _lifetime.NotifyStarted();

        AwaitAssignment("READY=1");
        Assert.Contains("STATUS=waiting for InstanceStart on the API socket", Assignments());
        var vm = new FakeVmController("later");
        _active.Set(vm);
        vm.Become(VmState.Running, VmEventKind.Started);
        AwaitAssignment("STATUS=running VM later");
        Assert.Single(Assignments(), a => a == "READY=1");
    }

    [Fact]
    public void Watchdog_pings_stop_while_a_thread_is_stalled_and_come_back_when_it_moves()
    {
        var vm = new FakeVmController("wd");
        _active.Set(vm);
        vm.Become(VmState.Running, VmEventKind.Started);
        var service = Start(watchdog: new SystemdWatchdog(TimeSpan.FromMilliseconds(200)));
        Assert.True(SpinWait.SpinUntil(() => service.Pings >= 3, Wait), _listener.Describe());

        vm.Progress = new VmProgress(["vCPU 0 in an exit handler for 1.2 s"]);
        AwaitAssignment("STATUS=stalled: vCPU 0 in an exit handler for 1.2 s");
        long stalledAt = service.Pings;
        int checks = Volatile.Read(ref vm.ProgressChecks);
        // Five more checks, every one of them stalled: not one ping.
        Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref vm.ProgressChecks) >= checks + 5, Wait));
        Assert.Equal(stalledAt, service.Pings);
        Assert.Contains(_log.Entries, e => e.Level == LogLevel.Error && e.Message.Contains("vCPU 0 in an exit handler for 1.2 s"));

        vm.Progress = new VmProgress([]);
        Assert.True(SpinWait.SpinUntil(() => service.Pings >= stalledAt + 2, Wait), _listener.Describe());
        Assert.Equal(service.Pings, _listener.Assignments.Count(a => a.Assignment == "WATCHDOG=1"));
    }

    [Fact]
    public void A_vm_that_ran_and_ended_before_its_started_event_was_seen_is_still_ready_with_the_reason_it_ended()
    {
        Start();
        var vm = new FakeVmController("quick");
        _active.Set(vm);
        vm.End(VmOutcome.GuestExit(0)); // ended; its "started" has not been delivered
        _active.Set(null);

        AwaitAssignment("READY=1");
        var sent = Assignments();
        Assert.Contains("STATUS=ended: guest exited with status 0", sent);
        vm.Publish(VmEventKind.Started, null); // the late event changes nothing more
        Assert.Single(Assignments(), a => a == "READY=1");
    }

    [Fact]
    public void A_vm_whose_start_failed_is_never_ready()
    {
        Start();
        var vm = new FakeVmController("broken");
        _active.Set(vm);
        vm.End(VmOutcome.Error("KVM_CREATE_VCPU failed"));
        _active.Set(null);

        AwaitAssignment("STATUS=ended: KVM_CREATE_VCPU failed");
        Assert.DoesNotContain("READY=1", Assignments());
    }

    [Fact]
    public void Without_a_controller_to_follow_the_host_started_is_ready()
    {
        _service = new SystemdNotifyService(_socket, null, SystemdReadiness.WhenVmRuns, null, _lifetime, _log);
        Assert.True(_service.StartAsync(CancellationToken.None).IsCompletedSuccessfully); // it starts synchronously
        _lifetime.NotifyStarted();
        AwaitAssignment("READY=1");
    }
}
