namespace KvmSharp.Vmm.Trackers.Remote;

/// <summary>How the VMM serves out-of-process trackers.</summary>
public sealed record RemoteTrackerOptions
{
    /// <summary>
    /// How long a vCPU spins on a synchronous tracker's ack before it blocks on the ack eventfd. 0 by default:
    /// measured on a 2-CPU host with many runnable threads (scripts/bench.sh tracked-write-oop), spinning 100 µs
    /// on both sides made a synchronous write ~6x slower than blocking at once (the spinner takes the CPU the
    /// tracker needs); on a host with idle CPUs a few µs of spinning can save the wake-up.
    /// </summary>
    public TimeSpan AckSpin { get; init; } = TimeSpan.Zero;

    /// <summary>Most trackers connected at once; more are refused (closed after an EBUSY reply).</summary>
    public int MaxTrackers { get; init; } = 16;
}
