namespace KvmSharp.Vmm.Trackers.Remote;

/// <summary>How the VMM serves out-of-process trackers.</summary>
public sealed record RemoteTrackerOptions
{
    /// <summary>How long a vCPU spins on a synchronous tracker's ack before it blocks on the ack eventfd.</summary>
    public TimeSpan AckSpin { get; init; } = TimeSpan.FromMicroseconds(100);

    /// <summary>Most trackers connected at once; more are refused (closed after an EBUSY reply).</summary>
    public int MaxTrackers { get; init; } = 16;
}
