using KvmSharp.Memory.PageTracking;
using KvmSharp.Vmm.Vcpus;

namespace KvmSharp.Vmm.PageTracking;

/// <summary>
/// Quiesces a VM through its pause gate: each quiesce is a lease of its own (a carve's pause is never
/// ended by an API resume, nor the other way round).
/// </summary>
public sealed class VcpuQuiescer(VcpuPauseGate gate, Func<IReadOnlyList<VcpuRunner>> vcpus) : IGuestQuiescer
{
    public IDisposable? TryQuiesce(string holder, TimeSpan timeout) =>
        gate.TryPause(holder, timeout, out var lease, out _) ? lease : null;

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
