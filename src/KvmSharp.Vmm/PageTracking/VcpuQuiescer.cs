using KvmSharp.Memory.PageTracking;
using KvmSharp.Vmm.Vcpus;

namespace KvmSharp.Vmm.PageTracking;

/// <summary>Quiesces a VM by pausing each of its vCPUs (nested pauses are counted per vCPU).</summary>
public sealed class VcpuQuiescer(Func<IReadOnlyList<VcpuRunner>> vcpus) : IGuestQuiescer
{
    public bool TryQuiesce(TimeSpan timeout)
    {
        var paused = new List<VcpuRunner>();
        foreach (var runner in vcpus())
        {
            if (runner.Pause(timeout))
            {
                paused.Add(runner);
                continue;
            }
            if (runner.HasEnded) continue;
            foreach (var undo in paused) undo.Resume();
            return false;
        }
        return true;
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
