using KvmSharp.Memory.PageTracking;
using KvmSharp.Vmm.Vcpus;

namespace KvmSharp.Vmm.PageTracking;

/// <summary>Quiesces a VM by pausing each of its vCPUs (nested pauses are counted per vCPU).</summary>
public sealed class VcpuQuiescer(Func<IReadOnlyList<VcpuRunner>> vcpus) : IGuestQuiescer
{
    public bool TryQuiesce(TimeSpan timeout)
    {
        // Ask every vCPU first, then wait: the pause costs the slowest vCPU's time, not the sum.
        var runners = vcpus();
        var asked = new List<VcpuRunner>(runners.Count);
        foreach (var runner in runners)
            if (runner.BeginPause()) asked.Add(runner);
        var paused = new List<VcpuRunner>(asked.Count);
        bool complete = true;
        foreach (var runner in asked)
        {
            if (runner.WaitPaused(timeout)) paused.Add(runner);
            else if (!runner.HasEnded) complete = false;
        }
        if (complete) return true;
        foreach (var undo in paused) undo.Resume();
        return false;
    }

    public void Release()
    {
        foreach (var runner in vcpus()) runner.Resume();
    }

    public IDisposable EnterHostCall()
    {
        var runner = VcpuRunner.Current;
        if (runner is null || !vcpus().Contains(runner)) return NoHostCall.Instance;
        runner.EnterHostCall();
        return new HostCall(runner);
    }

    private sealed class HostCall(VcpuRunner runner) : IDisposable
    {
        private int _left;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _left, 1) == 0) runner.LeaveHostCall();
        }
    }

    private sealed class NoHostCall : IDisposable
    {
        public static readonly NoHostCall Instance = new();

        public void Dispose()
        {
        }
    }
}
