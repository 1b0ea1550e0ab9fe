using KvmSharp.Vmm.Lifecycle;
using KvmSharp.Vmm.Machine;

namespace KvmSharp.Tests.Unit.Systemd;

/// <summary>
/// A controller driven by the test (state, events, progress) for the notifier's logic; no VM behind it.
/// </summary>
internal sealed class FakeVmController(string id) : IVmController
{
    private readonly List<Action<VmEvent>> _observers = new();
    private readonly TaskCompletionSource<VmOutcome> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _sequence;
    private volatile VmProgress _progress = new([]);

    public string Id { get; } = id;
    public VmState State { get; private set; } = VmState.Created;
    public VirtualMachine Machine => throw new NotSupportedException("the fake controller has no VM");
    public Task<VmOutcome> Completion => _completion.Task;

    /// <summary>What <see cref="CheckProgress"/> answers next.</summary>
    public VmProgress Progress
    {
        get => _progress;
        set => _progress = value;
    }

    public int ProgressChecks;

    /// <summary>Move to <paramref name="state"/> and tell the subscribers with an event of <paramref name="kind"/>.</summary>
    public void Become(VmState state, string kind, string? detail = null)
    {
        State = state;
        Publish(kind, detail);
    }

    public void End(VmOutcome outcome)
    {
        State = outcome.Kind is VmExitKind.Fault or VmExitKind.Error ? VmState.Failed : VmState.Stopped;
        _completion.TrySetResult(outcome);
    }

    public Task StartAsync(CancellationToken cancellation = default) => throw new NotSupportedException();
    public Task<IPauseLease> PauseAsync(string holder, CancellationToken cancellation = default) => throw new NotSupportedException();
    public Task SendCtrlAltDelAsync(CancellationToken cancellation = default) => throw new NotSupportedException();
    public Task StopAsync(string reason, CancellationToken cancellation = default) => throw new NotSupportedException();

    public IDisposable Subscribe(Action<VmEvent> observer)
    {
        lock (_observers) _observers.Add(observer);
        return new Unsubscriber(() => { lock (_observers) _observers.Remove(observer); });
    }

    public void Publish(string kind, string? detail)
    {
        var e = new VmEvent(Interlocked.Increment(ref _sequence), DateTimeOffset.UtcNow, kind, detail);
        Action<VmEvent>[] observers;
        lock (_observers) observers = _observers.ToArray();
        foreach (var observer in observers) observer(e);
    }

    public VmProgress CheckProgress(TimeSpan stallThreshold)
    {
        Interlocked.Increment(ref ProgressChecks);
        return _progress;
    }

    public void Dispose() { }

    private sealed class Unsubscriber(Action dispose) : IDisposable
    {
        public void Dispose() => dispose();
    }
}
