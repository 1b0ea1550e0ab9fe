using System.Diagnostics;
using KvmSharp.Devices.Events;

namespace KvmSharp.Vmm.Lifecycle;

/// <summary>
/// Whether the VM's event loop still runs posted work: one no-op is posted at a time and must run
/// within the threshold. While it is outstanding no other is posted, so a wedged loop is not flooded.
/// </summary>
internal sealed class EventLoopProbe(Func<IEventLoop?> eventLoop)
{
    private readonly Lock _lock = new();
    private Probe? _outstanding;

    /// <summary>Null when the loop ran the probe within <paramref name="threshold"/> (or there is no loop), else what is wrong. Waits at most the threshold.</summary>
    public string? Check(TimeSpan threshold)
    {
        if (eventLoop() is not { } loop) return null;
        Probe probe;
        lock (_lock)
        {
            if (_outstanding is null)
            {
                var posted = new Probe();
                try
                {
                    loop.Post(posted.Ran);
                }
                catch (ObjectDisposedException)
                {
                    return null; // the VM is gone with its loop
                }
                _outstanding = posted;
            }
            probe = _outstanding;
        }
        var left = threshold - Stopwatch.GetElapsedTime(probe.PostedAt);
        if (probe.Done.Wait(left > TimeSpan.Zero ? left : TimeSpan.Zero))
        {
            lock (_lock)
                if (_outstanding == probe) _outstanding = null;
            return null;
        }
        return $"the VM's event loop has not run a posted no-op for {Stopwatch.GetElapsedTime(probe.PostedAt).TotalSeconds:0.0} s";
    }

    private sealed class Probe
    {
        public readonly long PostedAt = Stopwatch.GetTimestamp();
        public readonly Task Done;
        private readonly TaskCompletionSource _ran = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Probe() => Done = _ran.Task;

        public void Ran() => _ran.TrySetResult();
    }
}
