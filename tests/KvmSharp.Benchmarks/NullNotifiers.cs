using System.Diagnostics;
using KvmSharp.Memory.PageTracking;

namespace KvmSharp.Benchmarks;

/// <summary>
/// The page-track notifier during the tracked-write benchmark: trivial work per write (a count and the last
/// gpa, no allocation), as the C reference's track_write does. It reads the clocks (wall, and the vCPU
/// thread's CPU time) at the first write, as the C reference does: no clock read in the steady state.
/// Single vCPU: plain increments suffice.
/// </summary>
internal sealed class TimestampingTrackNotifier : IPageTrackNotifier
{
    private long _writes;
    private ulong _lastGpa;
    private long _firstWriteTimestamp;
    private long _firstWriteThreadCpuNs;

    public long Writes => Volatile.Read(ref _writes);
    public ulong LastGpa => Volatile.Read(ref _lastGpa);
    public long FirstWriteTimestamp => Volatile.Read(ref _firstWriteTimestamp);
    public long FirstWriteThreadCpuNs => Volatile.Read(ref _firstWriteThreadCpuNs);

    public void TrackWrite(ulong gpa, ReadOnlySpan<byte> bytes)
    {
        if (_writes++ == 0)
        {
            _firstWriteTimestamp = Stopwatch.GetTimestamp();
            _firstWriteThreadCpuNs = ThreadClock.NowNs();
        }
        _lastGpa = gpa;
    }

    public void TrackRemoveRegion(ulong gfn, ulong pageCount)
    {
    }
}

/// <summary>Counts tracked writes from any number of vCPUs (the tracking-ops benchmark's notifier).</summary>
internal sealed class CountingTrackNotifier : IPageTrackNotifier
{
    private long _writes;

    public long Writes => Interlocked.Read(ref _writes);

    public void TrackWrite(ulong gpa, ReadOnlySpan<byte> bytes) => Interlocked.Increment(ref _writes);

    public void TrackRemoveRegion(ulong gfn, ulong pageCount)
    {
    }
}
