using System.Text;
using KvmSharp.Memory.PageTracking;

namespace KvmSharp.Vmm.Trackers;

/// <summary>
/// A page-track notifier users can run: it protects given guest ranges and counts every guest
/// write into them (per vCPU and per page), logs the first writes in full (gpa, size, value, vCPU),
/// and gives a summary at the end. Counting is lock-free; only the first logged writes allocate.
/// </summary>
public sealed class WriteAuditTracker : IPageTrackNotifier
{
    private const int MaxVcpus = 256;

    private readonly IReadOnlyList<GuestRange> _ranges;
    private readonly Action<string> _log;
    private readonly int _logLimit;
    private readonly long[] _writesPerPage;
    private readonly ulong[] _pageGfns;
    private readonly long[] _writesPerVcpu = new long[MaxVcpus];
    private long _writes, _bytes, _logged, _removedPages;

    public WriteAuditTracker(IReadOnlyList<GuestRange> ranges, Action<string> log, int logLimit = 16)
    {
        _ranges = ranges;
        _log = log;
        _logLimit = logLimit;
        _pageGfns = ranges.SelectMany(r => Enumerable.Range(0, (int)(r.EndGfn - r.FirstGfn)).Select(i => r.FirstGfn + (ulong)i)).Distinct().Order().ToArray();
        _writesPerPage = new long[_pageGfns.Length];
    }

    public long Writes => Interlocked.Read(ref _writes);
    public long Bytes => Interlocked.Read(ref _bytes);
    public IReadOnlyList<GuestRange> Ranges => _ranges;

    /// <summary>
    /// Register with the VM's tracker and protect every page of the ranges, write-trapped: a user's
    /// ranges may hold kernel code or page tables, which an access-trapped page (no kernel slot) would
    /// break; the audit only counts writes.
    /// </summary>
    public void Attach(PageTracker tracker)
    {
        tracker.Register(this);
        tracker.AddGfns(_pageGfns, TrackingMode.TrapWrites);
    }

    public void TrackWrite(ulong gpa, ReadOnlySpan<byte> bytes)
    {
        if (!InRanges(gpa)) return; // another tracker's page
        Interlocked.Increment(ref _writes);
        Interlocked.Add(ref _bytes, bytes.Length);
        int vcpu = PageTrackContext.CurrentVcpuId;
        if ((uint)vcpu < MaxVcpus) Interlocked.Increment(ref _writesPerVcpu[vcpu]);
        int page = Array.BinarySearch(_pageGfns, gpa / GuestRange.PageSize);
        if (page >= 0) Interlocked.Increment(ref _writesPerPage[page]);
        if (Interlocked.Increment(ref _logged) <= _logLimit)
            _log($"tracked write: gpa 0x{gpa:x} size {bytes.Length} value 0x{Value(bytes)} vcpu {vcpu}");
    }

    public void TrackRemoveRegion(ulong gfn, ulong pageCount)
    {
        Interlocked.Add(ref _removedPages, (long)pageCount);
        _log($"tracked region removed: gfn 0x{gfn:x} + {pageCount} pages");
    }

    private bool InRanges(ulong gpa)
    {
        foreach (var range in _ranges)
            if (range.Contains(gpa)) return true;
        return false;
    }

    // Little-endian value, most significant byte first.
    private static string Value(ReadOnlySpan<byte> bytes)
    {
        var text = new StringBuilder(bytes.Length * 2);
        for (int i = bytes.Length - 1; i >= 0; i--) text.Append(bytes[i].ToString("x2"));
        return text.ToString();
    }

    public string Summary()
    {
        var text = new StringBuilder();
        text.Append($"write audit of {string.Join(", ", _ranges)}: {Writes} writes, {Bytes} bytes");
        if (Writes > _logLimit) text.Append($" (first {_logLimit} logged)");
        var vcpus = Enumerable.Range(0, MaxVcpus).Where(v => _writesPerVcpu[v] > 0).Select(v => $"vcpu {v}: {_writesPerVcpu[v]}");
        text.Append($"; by vCPU: {string.Join(", ", vcpus.DefaultIfEmpty("none"))}");
        var pages = Enumerable.Range(0, _pageGfns.Length).Where(p => _writesPerPage[p] > 0).Select(p => $"0x{_pageGfns[p] * GuestRange.PageSize:x}: {_writesPerPage[p]}");
        text.Append($"; by page: {string.Join(", ", pages.DefaultIfEmpty("none"))}");
        if (_removedPages > 0) text.Append($"; {_removedPages} tracked pages removed with their memslot");
        return text.ToString();
    }
}
