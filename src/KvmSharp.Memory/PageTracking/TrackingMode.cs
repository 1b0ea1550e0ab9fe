namespace KvmSharp.Memory.PageTracking;

/// <summary>
/// How a tracked gfn is trapped. Userspace has no hook in KVM's instruction emulator, so the choice
/// trades read cost against what the kernel's own page track guarantees.
/// </summary>
public enum TrackingMode
{
    /// <summary>
    /// No kernel memslot maps the gfn: reads and writes both exit, so the instruction is known at its
    /// read (RIP still on it) and KvmSharp performs locked read-modify-writes (lock add/or/inc/xadd,
    /// bts, xchg, cmpxchg, ...) itself as real atomics on guest memory. Atomic across vCPUs and exact
    /// like the kernel (a failed cmpxchg is not reported). Reads cost an exit each. The page must not
    /// hold code the guest runs, nor guest page tables (KVM cannot fetch or walk through a gfn
    /// without a memslot): track those with <see cref="TrapWrites"/>. The default.
    /// </summary>
    TrapAccesses,

    /// <summary>
    /// A read-only kernel memslot maps the gfn: reads run natively, writes exit after KVM's emulator
    /// has read memory. A locked read-modify-write is therefore not atomic against other vCPUs (two
    /// can read the same old value), and a cmpxchg that fails is reported as a write of the unchanged
    /// bytes (telling it from a plain write would need the instruction, which RIP has already passed).
    /// Right for pages with code or page tables, and for one-vCPU VMs that only need writes seen.
    /// </summary>
    TrapWrites,
}
