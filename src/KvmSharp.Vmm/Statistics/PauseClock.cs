using KvmSharp.Vmm.Lifecycle;

namespace KvmSharp.Vmm.Statistics;

/// <summary>
/// How long a VM has been paused in all, from its controller's events (paused → resumed), timed by when each event
/// happened (<see cref="VmEvent.Time"/>), not when it was delivered: events reach observers later, on another thread.
/// A pause still under way counts up to now. Read by the metrics on the listener's thread.
/// </summary>
public sealed class PauseClock
{
    private readonly Lock _gate = new();
    private TimeSpan _paused;
    private DateTimeOffset? _pausedSince;
    private long _pauses;

    /// <summary>The pauses so far (a "paused" event each).</summary>
    public long Pauses
    {
        get { lock (_gate) return _pauses; }
    }

    /// <summary>Time spent paused so far.</summary>
    public TimeSpan Total
    {
        get
        {
            lock (_gate)
            {
                if (_pausedSince is not { } since) return _paused;
                var running = DateTimeOffset.UtcNow - since;
                return running > TimeSpan.Zero ? _paused + running : _paused;
            }
        }
    }

    /// <summary>The VM was paused at <paramref name="at"/> (a second pause while paused changes nothing).</summary>
    public void OnPaused(DateTimeOffset at)
    {
        lock (_gate)
        {
            if (_pausedSince is not null) return;
            _pausedSince = at;
            _pauses++;
        }
    }

    /// <summary>The VM ran again (or ended) at <paramref name="at"/>.</summary>
    public void OnRunning(DateTimeOffset at)
    {
        lock (_gate)
        {
            if (_pausedSince is not { } since) return;
            if (at > since) _paused += at - since;
            _pausedSince = null;
        }
    }

    /// <summary>Follow <paramref name="controller"/>'s events; dispose the result to stop.</summary>
    public IDisposable Observe(IVmController controller)
    {
        ArgumentNullException.ThrowIfNull(controller);
        if (controller.State == VmState.Paused) OnPaused(DateTimeOffset.UtcNow);
        return controller.Subscribe(e =>
        {
            switch (e.Kind)
            {
                case VmEventKind.Paused:
                    OnPaused(e.Time);
                    break;
                // Resumed, and any ending: the pause is over.
                case VmEventKind.Resumed or VmEventKind.Started or VmEventKind.Shutdown or VmEventKind.Reboot or VmEventKind.Fault:
                    OnRunning(e.Time);
                    break;
            }
        });
    }
}
