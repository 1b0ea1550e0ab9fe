using KvmSharp.Kvm.Interop;

namespace KvmSharp.Memory.Memslots;

/// <summary>The host facts the memslot rules depend on; read from the VM (see <see cref="MemslotLimitsProbe"/>).</summary>
public sealed record MemslotLimits
{
    /// <summary>KVM_CAP_NR_MEMSLOTS: ids at or above it are refused.</summary>
    public int SlotsPerAddressSpace { get; init; } = 32764;

    /// <summary>KVM_CAP_MULTI_ADDRESS_SPACE (at least 1): 2 means as_id 1 (SMM) exists.</summary>
    public int AddressSpaces { get; init; } = 1;

    /// <summary>Whether KVM_CAP_X86_SMM is set; reported in errors about address space 1.</summary>
    public bool SmmSupported { get; init; }

    /// <summary>Flags the kernel accepts: KVM_MEM_LOG_DIRTY_PAGES, and KVM_MEM_READONLY with KVM_CAP_READONLY_MEM.</summary>
    public uint ValidFlags { get; init; } = KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES | KvmMemFlags.KVM_MEM_READONLY;

    /// <summary>Highest gfn a CREATE or MOVE may reach (kvm_mmu_max_gfn on x86).</summary>
    public ulong MaxGfn { get; init; } = (1UL << (52 - Memslot.PageShift)) - 1;

    /// <summary>Highest userspace address plus one (TASK_SIZE_MAX): access_ok() bounds the host range.</summary>
    public ulong UserAddressLimit { get; init; } = (1UL << 47) - 4096;

    /// <summary>KVM_MEM_MAX_NR_PAGES.</summary>
    public const ulong MaxPagesPerSlot = (1UL << 31) - 1;
}
