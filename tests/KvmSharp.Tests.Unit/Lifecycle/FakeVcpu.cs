using KvmSharp.Vmm.Vcpus;

namespace KvmSharp.Tests.Unit.Lifecycle;

/// <summary>A vCPU for the pause gate without KVM: parks at once unless <see cref="Stuck"/>; counts what it was asked.</summary>
internal sealed class FakeVcpu(int id) : IPausableVcpu
{
    private readonly object _gate = new();
    private int _depth;

    public int Id { get; } = id;

    /// <summary>Never parks (a vCPU wedged in a device).</summary>
    public bool Stuck { get; set; }

    public bool Ended { get; set; }

    public int ClockStops { get; private set; }

    public int Depth
    {
        get { lock (_gate) return _depth; }
    }

    public bool IsPaused => Depth > 0;

    public bool BeginPause()
    {
        lock (_gate)
        {
            if (Ended) return false;
            _depth++;
            return true;
        }
    }

    public bool WaitParked(long deadline)
    {
        if (!Stuck) return true;
        while (System.Diagnostics.Stopwatch.GetTimestamp() < deadline) Thread.Sleep(1);
        return false;
    }

    public void ReleasePause()
    {
        lock (_gate)
        {
            if (_depth == 0) throw new InvalidOperationException($"vCPU {Id}: released a pause it did not hold");
            _depth--;
        }
    }

    public int StopGuestClock()
    {
        ClockStops++;
        return 0;
    }

    public string DescribeNotParked() => $"vCPU {Id} is stuck (test)";
}
