using KvmSharp.Memory.PageTracking;
using KvmSharp.Vmm.Memory;

namespace KvmSharp.Tests.Integration.Infrastructure;

/// <summary>Records every hook call, and what guest memory held at the reported address during the call.</summary>
public sealed class RecordingNotifier(GuestPhysicalMemory? memory = null) : IPageTrackNotifier
{
    public sealed record Write(ulong Gpa, byte[] Bytes, int Vcpu, byte[]? MemoryDuringCall);

    private readonly object _gate = new();
    private readonly List<Write> _writes = new();
    private readonly List<(ulong Gfn, ulong Pages)> _removals = new();

    public Action<ulong, byte[]>? OnWrite { get; set; }

    public IReadOnlyList<Write> Writes
    {
        get { lock (_gate) return _writes.ToList(); }
    }

    public IReadOnlyList<(ulong Gfn, ulong Pages)> Removals
    {
        get { lock (_gate) return _removals.ToList(); }
    }

    public void TrackWrite(ulong gpa, ReadOnlySpan<byte> bytes)
    {
        byte[]? seen = null;
        if (memory is not null)
        {
            seen = new byte[bytes.Length];
            memory.Read(gpa, seen);
        }
        var copy = bytes.ToArray();
        lock (_gate) _writes.Add(new Write(gpa, copy, PageTrackContext.CurrentVcpuId, seen));
        OnWrite?.Invoke(gpa, copy);
    }

    public void TrackRemoveRegion(ulong gfn, ulong pageCount)
    {
        lock (_gate) _removals.Add((gfn, pageCount));
    }
}
