using KvmSharp.Kvm.Interop;

namespace KvmSharp.Memory.PageTracking;

/// <summary>One kernel memslot realising part of a user memslot. Tracked pieces are KVM_MEM_READONLY so guest writes exit.</summary>
public readonly record struct KernelSlotPiece(ushort KernelId, ushort AddressSpace, ulong GuestPhysAddr, ulong Size, ulong HostAddress, uint Flags)
{
    public bool IsTrackedCarve => (Flags & KvmMemFlags.KVM_MEM_READONLY) != 0;
    public uint PackedSlot => KernelId | ((uint)AddressSpace << 16);

    public kvm_userspace_memory_region ToKernel() => new()
    {
        slot = PackedSlot, flags = Flags, guest_phys_addr = GuestPhysAddr, memory_size = Size, userspace_addr = HostAddress,
    };

    public kvm_userspace_memory_region ToKernelDelete() => new() { slot = PackedSlot };

    /// <summary>Same range, flags and host address (ids may differ).</summary>
    public bool SameShape(KernelSlotPiece other) =>
        GuestPhysAddr == other.GuestPhysAddr && Size == other.Size && HostAddress == other.HostAddress && Flags == other.Flags;
}
