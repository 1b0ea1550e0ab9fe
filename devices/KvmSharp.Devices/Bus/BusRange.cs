namespace KvmSharp.Devices.Bus;

/// <summary>One address range registered on a <see cref="DeviceBus"/>, for diagnostics.</summary>
/// <param name="BaseAddress">First address of the range.</param>
/// <param name="Length">Number of addresses in the range (never zero).</param>
/// <param name="Name">Name the device was registered under.</param>
public readonly record struct BusRange(ulong BaseAddress, ulong Length, string Name)
{
    /// <summary>Last address inside the range (inclusive, so a range may end at <see cref="ulong.MaxValue"/>).</summary>
    public ulong LastAddress => BaseAddress + (Length - 1);

    /// <summary>Whether <paramref name="address"/> falls inside the range; written so it cannot overflow.</summary>
    public bool Contains(ulong address) => address >= BaseAddress && address - BaseAddress < Length;

    /// <summary>Whether the two ranges share at least one address.</summary>
    public bool Overlaps(BusRange other) => BaseAddress <= other.LastAddress && other.BaseAddress <= LastAddress;

    /// <summary>Hex form used in error messages and logs, e.g. <c>serial0 [0x3f8..0x3ff]</c>.</summary>
    public override string ToString() => $"'{Name}' [0x{BaseAddress:x}..0x{LastAddress:x}]";
}
