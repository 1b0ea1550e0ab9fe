namespace KvmSharp.Devices.Pci;

/// <summary>
/// A decoded configuration address, as both access mechanisms give it: ECAM's offset
/// (bus &lt;&lt; 20 | device &lt;&lt; 15 | function &lt;&lt; 12 | register) and mechanism #1's 0xCF8 dword
/// (enable &lt;&lt; 31 | bus &lt;&lt; 16 | device &lt;&lt; 11 | function &lt;&lt; 8 | register).
/// </summary>
public readonly record struct PciConfigAddress(PciAddress Function, int Register)
{
    /// <summary>Bit 31 of the 0xCF8 register: the next 0xCFC access is a configuration cycle.</summary>
    public const uint ConfigMechanism1Enable = 0x8000_0000;

    public static PciConfigAddress FromEcamOffset(ulong offset) => new(
        new PciAddress((byte)(offset >> 20), (byte)((offset >> 15) & 0x1f), (byte)((offset >> 12) & 0x7)),
        (int)(offset & 0xfff));

    /// <summary>Decode the 0xCF8 value; the register's two low bits are always zero (the byte within the dword comes from the 0xCFC port used).</summary>
    public static PciConfigAddress FromConfigMechanism1(uint address) => new(
        new PciAddress((byte)(address >> 16), (byte)((address >> 11) & 0x1f), (byte)((address >> 8) & 0x7)),
        (int)(address & 0xfc));

    public static ulong ToEcamOffset(PciAddress function, int register) =>
        ((ulong)function.Bus << 20) | ((ulong)function.Device << 15) | ((ulong)function.Function << 12) | (uint)register;

    public static uint ToConfigMechanism1(PciAddress function, int register) =>
        ConfigMechanism1Enable | ((uint)function.Bus << 16) | ((uint)function.Device << 11) | ((uint)function.Function << 8) | ((uint)register & 0xfc);
}
