using KvmSharp.Memory.PageTracking;

namespace KvmSharp.Tests.Unit.PageTracking;

internal delegate void TrackWriteHook(ulong gpa, ReadOnlySpan<byte> bytes);

/// <summary>A page-track notifier that records both hooks (thread-safe), with an optional extra action in TrackWrite.</summary>
internal class RecordingNotifier : IPageTrackNotifier
{
    public readonly record struct Write(ulong Gpa, byte[] Bytes, int VcpuId);

    private readonly object _lock = new();
    private readonly List<Write> _writes = [];
    private readonly List<(ulong Gfn, ulong Pages)> _removals = [];

    public TrackWriteHook? OnWrite { get; set; }
    public Action<ulong, ulong>? OnRemove { get; set; }

    public IReadOnlyList<Write> Writes
    {
        get { lock (_lock) return _writes.ToList(); }
    }

    public int WriteCount
    {
        get { lock (_lock) return _writes.Count; }
    }

    public IReadOnlyList<(ulong Gfn, ulong Pages)> Removals
    {
        get { lock (_lock) return _removals.ToList(); }
    }

    public virtual void TrackWrite(ulong gpa, ReadOnlySpan<byte> bytes)
    {
        lock (_lock) _writes.Add(new Write(gpa, bytes.ToArray(), PageTrackContext.CurrentVcpuId));
        OnWrite?.Invoke(gpa, bytes);
    }

    public virtual void TrackRemoveRegion(ulong gfn, ulong pageCount)
    {
        lock (_lock) _removals.Add((gfn, pageCount));
        OnRemove?.Invoke(gfn, pageCount);
    }
}
