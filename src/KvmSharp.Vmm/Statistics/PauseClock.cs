using System.Diagnostics;
using KvmSharp.Vmm.Lifecycle;

namespace KvmSharp.Vmm.Statistics;

/// <summary>
/// How long a VM has been paused in all, from its controller's events (paused → resumed); a pause still under
/// way counts up to now. Read by the metrics on the listener's thread, written by the controller's event thread.
/// </summary>
public sealed class PauseClock
{
    private readonly Lock _gate = new();
    private long _pausedTicks;
    private long _pausedSince;
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
                long ticks = _pausedTicks + (_pausedSince != 0 ? Stopwatch.GetTimestamp() - _pausedSince : 0);
                return Stopwatch.GetElapsedTime(0, ticks);
            }
        }
    }

    public void OnPaused()
    {
        lock (_gate)
        {
            if (_pausedSince != 0) return;
            _pausedSince = Stopwatch.GetTimestamp();
            _pauses++;
        }
    }

    public void OnRunning()
    {
        lock (_gate)
        {
            if (_pausedSince == 0) return;
            _pausedTicks += Stopwatch.GetTimestamp() - _pausedSince;
            _pausedSince = 0;
        }
    }

    /// <summary>Follow <paramref name="controller"/>'s events; dispose the result to stop.</summary>
    public IDisposable Observe(IVmController controller)
    {
        ArgumentNullException.ThrowIfNull(controller);
        if (controller.State == VmState.Paused) OnPaused();
        return controller.Subscribe(e =>
        {
            switch (e.Kind)
            {
                case VmEventKind.Paused:
                    OnPaused();
                    break;
                // Resumed, and any ending: the pause is over.
                case VmEventKind.Resumed or VmEventKind.Started or VmEventKind.Shutdown or VmEventKind.Reboot or VmEventKind.Fault:
                    OnRunning();
                    break;
            }
        });
    }
}
