namespace KvmSharp.Memory.DirtyLog;

/// <summary>How a VM learns which guest pages were written. A VM uses exactly one, chosen at creation.</summary>
public enum DirtyLogMode
{
    /// <summary>KVM_GET_DIRTY_LOG per slot: each harvest copies, clears and write-protects the whole slot's log.</summary>
    Bitmap,

    /// <summary>
    /// KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: KVM_GET_DIRTY_LOG only copies; KVM_CLEAR_DIRTY_LOG then clears and
    /// write-protects exactly the pages that were reported, so clean pages are left alone.
    /// </summary>
    ManualProtect,

    /// <summary>
    /// KVM_CAP_DIRTY_LOG_RING(_ACQ_REL): each vCPU pushes the gfns it dirties into a ring shared with
    /// KvmSharp; harvesting reads the rings and KVM_RESET_DIRTY_RINGS re-protects what was read.
    /// </summary>
    Ring,
}
