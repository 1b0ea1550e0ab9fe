using System.Runtime.InteropServices;

// Interop structs mirror <linux/kvm.h> verbatim, names included; a test proves each layout with gcc.
#pragma warning disable IDE1006, CS0649
namespace KvmSharp.Kvm.Interop;

/// <summary>KVM_CLEAR_DIRTY_LOG's argument: clear (and write-protect) the set bits of a page range of a slot.</summary>
[KvmLayout("struct kvm_clear_dirty_log"), StructLayout(LayoutKind.Sequential)]
public struct kvm_clear_dirty_log
{
    public uint slot;
    public uint num_pages;
    public ulong first_page;
    /// <summary>Address of the bitmap, one bit per page from first_page.</summary>
    public ulong dirty_bitmap;
}

/// <summary>One dirty-ring entry: the kernel sets DIRTY, userspace sets RESET after harvesting it.</summary>
[KvmLayout("struct kvm_dirty_gfn"), StructLayout(LayoutKind.Sequential)]
public struct kvm_dirty_gfn
{
    public uint flags;
    /// <summary>Packed kernel slot: id | (as_id &lt;&lt; 16).</summary>
    public uint slot;
    /// <summary>Page offset of the dirty gfn within the slot.</summary>
    public ulong offset;
}

public static class KvmDirtyGfnFlags
{
    public const uint KVM_DIRTY_GFN_F_DIRTY = 1u << 0;
    public const uint KVM_DIRTY_GFN_F_RESET = 1u << 1;
}

/// <summary>Arguments of KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2).</summary>
public static class KvmDirtyLogProtectFlags
{
    /// <summary>KVM_GET_DIRTY_LOG stops clearing and write-protecting; KVM_CLEAR_DIRTY_LOG does it for the given pages.</summary>
    public const ulong KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE = 1UL << 0;

    /// <summary>A slot that starts logging has every bit set and nothing write-protected yet.</summary>
    public const ulong KVM_DIRTY_LOG_INITIALLY_SET = 1UL << 1;
}

public static class KvmDirtyRingLayout
{
    /// <summary>Page offset in the vCPU fd's mapping where the dirty ring starts (x86).</summary>
    public const int KVM_DIRTY_LOG_PAGE_OFFSET = 64;
}
