using System.Threading.Channels;
using KvmSharp.Vmm.Lifecycle;
using KvmSharp.Vmm.Machine;

namespace KvmSharp.Hosting;

/// <summary>
/// A stand-in for the lifecycle's VmController until it lands (then <see cref="VmControllers"/> names that one and this
/// file goes): checked transitions and per-holder pause leases over <see cref="VirtualMachine.PauseAll"/>/ResumeAll,
/// events delivered in order on a thread of their own. It does not complete pending I/O before parking, call
/// KVM_KVMCLOCK_CTRL, or watch progress; those are the real controller's.
/// </summary>
internal sealed class InterimVmController : IVmController
{
    private static readonly TimeSpan PauseDeadline = TimeSpan.FromSeconds(5);
    private static long s_nextId;

    private readonly object _gate = new();
    private readonly List<Lease> _leases = [];
    private readonly List<Action<VmEvent>> _observers = [];
    private readonly Channel<VmEvent> _events = Channel.CreateUnbounded<VmEvent>(new UnboundedChannelOptions { SingleReader = true });
    private readonly TaskCompletionSource<VmOutcome> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _sequence;
    private VmState _state = VmState.Created;
    private bool _started;

    public InterimVmController(VirtualMachine vm)
    {
        Machine = vm;
        Id = $"vm-{Environment.ProcessId}-{Interlocked.Increment(ref s_nextId)}";
        vm.Ended += OnEnded;
        _ = Task.Run(DeliverEvents);
    }

    public string Id { get; }

    public VirtualMachine Machine { get; }

    public VmState State
    {
        get
        {
            lock (_gate) return _state;
        }
    }

    public Task<VmOutcome> Completion => _completion.Task;

    public Task StartAsync(CancellationToken cancellation = default)
    {
        lock (_gate)
        {
            if (_state != VmState.Created) throw new VmTransitionException(_state, "start", $"the VM is {_state}; only a Created VM can start");
            Machine.Start();
            _started = true;
            _state = Machine.Outcome is null ? VmState.Running : _state;
            Add(VmEventKind.Started, null);
        }
        _ = Task.Run(() => _completion.TrySetResult(Machine.WaitForExit()));
        return Task.CompletedTask;
    }

    public Task<IPauseLease> PauseAsync(string holder, CancellationToken cancellation = default)
    {
        lock (_gate)
        {
            if (_state is not (VmState.Running or VmState.Paused)) throw new VmTransitionException(_state, "pause", $"the VM is {_state}; only a running VM can be paused");
            if (_leases.Count == 0)
            {
                if (!Machine.PauseAll(PauseDeadline))
                {
                    Machine.ResumeAll();
                    throw new TimeoutException($"a vCPU did not pause within {PauseDeadline.TotalSeconds:0} s");
                }
                _state = VmState.Paused;
                Add(VmEventKind.Paused, holder);
            }
            var lease = new Lease(this, holder);
            _leases.Add(lease);
            return Task.FromResult<IPauseLease>(lease);
        }
    }

    private void Release(Lease lease)
    {
        lock (_gate)
        {
            if (!_leases.Remove(lease) || _leases.Count > 0) return;
            Machine.ResumeAll();
            if (_state != VmState.Paused) return;
            _state = VmState.Running;
            Add(VmEventKind.Resumed, lease.Holder);
        }
    }

    public Task SendCtrlAltDelAsync(CancellationToken cancellation = default)
    {
        lock (_gate)
        {
            if (_state != VmState.Running) throw new VmTransitionException(_state, "ctrl-alt-del", $"the VM is {_state}; Ctrl-Alt-Del needs a running VM");
            if (!Machine.RequestGuestShutdown()) throw new VmTransitionException(_state, "ctrl-alt-del", "the VM has no i8042 keyboard to send Ctrl-Alt-Del to");
        }
        return Task.CompletedTask;
    }

    public Task StopAsync(string reason, CancellationToken cancellation = default)
    {
        Machine.Stop(reason);
        return Task.CompletedTask;
    }

    private void OnEnded(VmOutcome outcome)
    {
        bool started;
        lock (_gate)
        {
            started = _started;
            _state = outcome.Kind is VmExitKind.Fault or VmExitKind.Error or VmExitKind.Timeout ? VmState.Failed : VmState.Stopped;
            // Parked vCPUs see the stop request; the leases are over.
            if (_leases.Count > 0) Machine.ResumeAll();
            _leases.Clear();
            Add(outcome.Kind switch
            {
                VmExitKind.Reboot => VmEventKind.Reboot,
                VmExitKind.Fault or VmExitKind.Error => VmEventKind.Fault,
                _ => VmEventKind.Shutdown,
            }, outcome.Summary);
        }
        // Never started: no vCPU thread to wait for.
        if (!started) _completion.TrySetResult(outcome);
    }

    public IDisposable Subscribe(Action<VmEvent> observer)
    {
        lock (_observers) _observers.Add(observer);
        return new Subscription(this, observer);
    }

    public void Publish(string kind, string? detail)
    {
        lock (_gate) Add(kind, detail);
    }

    public VmProgress CheckProgress(TimeSpan stallThreshold) => new([]);

    // Caller holds _gate, so sequence numbers follow the order of the transitions.
    private void Add(string kind, string? detail) => _events.Writer.TryWrite(new VmEvent(++_sequence, DateTimeOffset.UtcNow, kind, detail));

    private async Task DeliverEvents()
    {
        await foreach (var e in _events.Reader.ReadAllAsync())
        {
            Action<VmEvent>[] observers;
            lock (_observers) observers = [.. _observers];
            foreach (var observer in observers) observer(e);
        }
    }

    public void Dispose()
    {
        Machine.Ended -= OnEnded;
        _events.Writer.TryComplete();
    }

    private sealed class Lease(InterimVmController owner, string holder) : IPauseLease
    {
        private int _released;

        public string Holder { get; } = holder;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) owner.Release(this);
        }
    }

    private sealed class Subscription(InterimVmController owner, Action<VmEvent> observer) : IDisposable
    {
        public void Dispose()
        {
            lock (owner._observers) owner._observers.Remove(observer);
        }
    }
}
