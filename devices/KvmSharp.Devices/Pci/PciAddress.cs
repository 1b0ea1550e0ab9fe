namespace KvmSharp.Devices.Pci;

/// <summary>Where a function sits: bus, device (slot) and function number, printed as Linux does (<c>00:01.0</c>).</summary>
public readonly record struct PciAddress(byte Bus, byte Device, byte Function)
{
    /// <summary>Devices per bus (5 bits of the address).</summary>
    public const int DevicesPerBus = 32;

    /// <summary>Functions per device (3 bits of the address).</summary>
    public const int FunctionsPerDevice = 8;

    public override string ToString() => $"{Bus:x2}:{Device:x2}.{Function:x}";
}
