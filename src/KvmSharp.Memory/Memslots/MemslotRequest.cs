using KvmSharp.Kvm.Interop;

namespace KvmSharp.Memory.Memslots;

/// <summary>
/// A KVM_SET_USER_MEMORY_REGION request exactly as userspace passes it: the kernel derives what it
/// means (create, delete, move, flags) from the current memslots.
/// </summary>
public readonly record struct MemslotRequest(uint Slot, uint Flags, ulong GuestPhysAddr, ulong MemorySize, ulong UserspaceAddr)
{
    public ushort Id => (ushort)Slot;
    public uint AddressSpace => Slot >> 16;

    public static uint Pack(ushort id, ushort addressSpace) => id | ((uint)addressSpace << 16);

    public static MemslotRequest Create(ushort id, ulong guestPhysAddr, ulong size, ulong hostAddress, uint flags = 0, ushort addressSpace = 0) =>
        new(Pack(id, addressSpace), flags, guestPhysAddr, size, hostAddress);

    public static MemslotRequest Delete(ushort id, ushort addressSpace = 0) => new(Pack(id, addressSpace), 0, 0, 0, 0);

    public kvm_userspace_memory_region ToKernel() => new()
    {
        slot = Slot,
        flags = Flags,
        guest_phys_addr = GuestPhysAddr,
        memory_size = MemorySize,
        userspace_addr = UserspaceAddr,
    };

    public override string ToString() =>
        $"slot {Id} (as {AddressSpace}) gpa 0x{GuestPhysAddr:x} size 0x{MemorySize:x} hva 0x{UserspaceAddr:x} flags 0x{Flags:x}";
}
