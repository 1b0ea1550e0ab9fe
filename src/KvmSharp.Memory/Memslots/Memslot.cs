namespace KvmSharp.Memory.Memslots;

/// <summary>One memslot as KVM sees it: id and address space, guest range, host address, flags.</summary>
public readonly record struct Memslot(ushort Id, ushort AddressSpace, ulong GuestPhysAddr, ulong Size, ulong HostAddress, uint Flags)
{
    public const int PageShift = 12;

    public ulong BaseGfn => GuestPhysAddr >> PageShift;
    public ulong PageCount => Size >> PageShift;

    /// <summary>One past the last gfn.</summary>
    public ulong EndGfn => BaseGfn + PageCount;

    /// <summary>The kernel's packed slot number: id | (as_id &lt;&lt; 16).</summary>
    public uint PackedSlot => Id | ((uint)AddressSpace << 16);

    public bool ContainsGfn(ulong gfn) => gfn >= BaseGfn && gfn < EndGfn;

    /// <summary>Host address of <paramref name="gpa"/>, which must lie in this slot.</summary>
    public ulong HostAddressOf(ulong gpa) => HostAddress + (gpa - GuestPhysAddr);

    public override string ToString() =>
        $"slot {Id} (as {AddressSpace}) gpa 0x{GuestPhysAddr:x}+0x{Size:x} hva 0x{HostAddress:x} flags 0x{Flags:x}";
}
