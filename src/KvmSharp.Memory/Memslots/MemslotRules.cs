using KvmSharp.Kvm.Interop;

namespace KvmSharp.Memory.Memslots;

/// <summary>
/// The checks of virt/kvm/kvm_main.c (__kvm_set_memory_region) and x86's prepare step, in the kernel's
/// order, so a refusal carries the errno the kernel would return. Pure: it looks, it changes nothing.
/// </summary>
public static class MemslotRules
{
    private const ulong PageMask = (1UL << Memslot.PageShift) - 1;

    public static MemslotVerdict Check(MemslotSnapshot current, MemslotLimits limits, in MemslotRequest request)
    {
        ushort id = request.Id;
        uint addressSpace = request.AddressSpace;

        if (id >= limits.SlotsPerAddressSpace)
            return Refuse($"slot id {id} is not below KVM_CAP_NR_MEMSLOTS ({limits.SlotsPerAddressSpace})");
        if ((request.Flags & ~limits.ValidFlags) != 0)
            return Refuse($"flags 0x{request.Flags:x} include bits KVM does not accept (valid: 0x{limits.ValidFlags:x})");
        if ((request.MemorySize & PageMask) != 0)
            return Refuse($"memory_size 0x{request.MemorySize:x} is not page aligned");
        if ((request.GuestPhysAddr & PageMask) != 0)
            return Refuse($"guest_phys_addr 0x{request.GuestPhysAddr:x} is not page aligned");
        if ((request.UserspaceAddr & PageMask) != 0)
            return Refuse($"userspace_addr 0x{request.UserspaceAddr:x} is not page aligned");
        if (request.MemorySize > limits.UserAddressLimit || request.UserspaceAddr > limits.UserAddressLimit - request.MemorySize)
            return Refuse($"userspace range 0x{request.UserspaceAddr:x}+0x{request.MemorySize:x} leaves the user address space");
        if (addressSpace >= limits.AddressSpaces)
            return Refuse(addressSpace == 1
                ? $"address space 1 (SMM) does not exist on this VM: KVM_CAP_MULTI_ADDRESS_SPACE={limits.AddressSpaces}, KVM_CAP_X86_SMM={(limits.SmmSupported ? 1 : 0)}"
                : $"address space {addressSpace} is out of range (KVM_CAP_MULTI_ADDRESS_SPACE={limits.AddressSpaces})");
        if (request.GuestPhysAddr + request.MemorySize < request.GuestPhysAddr)
            return Refuse($"guest range 0x{request.GuestPhysAddr:x}+0x{request.MemorySize:x} wraps around");
        if ((request.MemorySize >> Memslot.PageShift) > MemslotLimits.MaxPagesPerSlot)
            return Refuse($"{request.MemorySize >> Memslot.PageShift} pages exceed KVM_MEM_MAX_NR_PAGES (2^31-1)");

        Memslot? old = current.FindById((ushort)addressSpace, id);

        if (request.MemorySize == 0)
        {
            return old is null
                ? Refuse($"slot {id} in address space {addressSpace} does not exist, so it cannot be deleted")
                : new MemslotVerdict(MemslotChangeKind.Delete, 0, null, old, null);
        }

        var proposed = new Memslot(id, (ushort)addressSpace, request.GuestPhysAddr, request.MemorySize, request.UserspaceAddr, request.Flags);
        MemslotChangeKind kind;
        if (old is not { } existing)
        {
            kind = MemslotChangeKind.Create;
        }
        else
        {
            if (request.UserspaceAddr != existing.HostAddress)
                return Refuse($"slot {id} exists with userspace_addr 0x{existing.HostAddress:x}: the host address of a slot cannot change");
            if (request.MemorySize != existing.Size)
                return Refuse($"slot {id} exists with size 0x{existing.Size:x}: a slot cannot be resized, delete and re-create it");
            if (((request.Flags ^ existing.Flags) & KvmMemFlags.KVM_MEM_READONLY) != 0)
                return Refuse($"slot {id}: KVM_MEM_READONLY cannot be toggled on an existing slot");

            if (proposed.BaseGfn != existing.BaseGfn) kind = MemslotChangeKind.Move;
            else if (request.Flags != existing.Flags) kind = MemslotChangeKind.FlagsOnly;
            else return new MemslotVerdict(MemslotChangeKind.None, 0, null, existing, existing);
        }

        if (kind is MemslotChangeKind.Create or MemslotChangeKind.Move)
        {
            if (current.FindOverlap(proposed, id) is { } other)
                return new MemslotVerdict(MemslotChangeKind.None, Errno.EEXIST,
                    $"gpa 0x{proposed.GuestPhysAddr:x}+0x{proposed.Size:x} overlaps slot {other.Id} (gpa 0x{other.GuestPhysAddr:x}+0x{other.Size:x}) in address space {addressSpace}",
                    old, null);
            if (proposed.EndGfn - 1 > limits.MaxGfn)
                return Refuse($"gfn 0x{proposed.EndGfn - 1:x} is above the highest gfn this KVM maps (0x{limits.MaxGfn:x})");
        }

        return new MemslotVerdict(kind, 0, null, old, proposed);
    }

    private static MemslotVerdict Refuse(string reason) => MemslotVerdict.Refuse(Errno.EINVAL, reason);
}
