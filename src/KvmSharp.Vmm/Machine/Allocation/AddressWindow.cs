namespace KvmSharp.Vmm.Machine.Allocation;

/// <summary>A half-open range [Start, End) of an address space (guest-physical or ports).</summary>
public readonly record struct AddressWindow(ulong Start, ulong End)
{
    public ulong Size => End - Start;

    /// <summary>Last address inside (for ACPI's inclusive maxima).</summary>
    public ulong Last => End - 1;

    public bool Overlaps(AddressWindow other) => Start < other.End && other.Start < End;

    public bool Contains(AddressWindow other) => other.Start >= Start && other.End <= End;

    public override string ToString() => $"[0x{Start:x}, 0x{End:x})";
}
