namespace KvmSharp.Memory.PageTracking;

/// <summary>
/// An external write tracker (KVMGT-style), with exactly the two hooks of the kernel's
/// kvm_page_track_notifier_node since Linux 6.6. Hooks run on vCPU threads and may run
/// concurrently on several vCPUs.
/// </summary>
public interface IPageTrackNotifier
{
    /// <summary>
    /// A guest write to a tracked gfn has landed in guest memory: <paramref name="bytes"/> are exactly
    /// the bytes written at <paramref name="gpa"/>. The vCPU is <see cref="PageTrackContext.CurrentVcpuId"/>.
    /// </summary>
    void TrackWrite(ulong gpa, ReadOnlySpan<byte> bytes);

    /// <summary>Guest memory [gfn, gfn + pageCount) is gone: its memslot was deleted (or moved) and the kernel accepted it.</summary>
    void TrackRemoveRegion(ulong gfn, ulong pageCount);
}
