namespace KvmSharp.Memory.PageTracking;

/// <summary>
/// Lets memory-layout changes stop the guest around them (the VMM pauses every vCPU), so the guest
/// never observes a half-made layout and every trapped access in flight has finished. A quiesce is
/// also the grace period that unregister waits for. Each quiesce is its holder's own pause lease:
/// no other holder's resume can end it, and disposing it ends only it.
/// </summary>
public interface IGuestQuiescer
{
    /// <summary>
    /// Pause every vCPU (those already ended count as paused) for <paramref name="holder"/> until the result
    /// is disposed; null on timeout, with nothing left paused by this call.
    /// </summary>
    IDisposable? TryQuiesce(string holder, TimeSpan timeout);

    /// <summary>
    /// Marks the calling vCPU thread (if it is one) as quiescent while it runs host code such as a
    /// tracking call from inside a hook, so two vCPUs doing that at once cannot deadlock.
    /// </summary>
    IDisposable EnterHostCall();
}

/// <summary>For a memory model with no vCPUs (unit tests, tools): nothing to pause.</summary>
public sealed class NoVcpuQuiescer : IGuestQuiescer
{
    public int Quiesces { get; private set; }

    public IDisposable? TryQuiesce(string holder, TimeSpan timeout)
    {
        Quiesces++;
        return NoOp.Instance;
    }

    public IDisposable EnterHostCall() => NoOp.Instance;

    private sealed class NoOp : IDisposable
    {
        public static readonly NoOp Instance = new();
        public void Dispose()
        {
        }
    }
}
