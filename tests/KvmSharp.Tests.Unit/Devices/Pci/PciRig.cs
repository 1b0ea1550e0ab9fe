using KvmSharp.Devices.Bus;
using KvmSharp.Devices.Pci;

namespace KvmSharp.Tests.Unit.Devices.Pci;

/// <summary>A root bus wired as the VMM wires it: CF8/CFC on a port bus, ECAM and BARs on an MMIO bus.</summary>
internal sealed class PciRig
{
    public const ulong EcamBase = 0xb000_0000;
    public const ulong Window32Base = 0xc000_0000;
    public const ulong Window32Size = 0x1000_0000;
    public const ulong Window64Base = 0x1_0000_0000;
    public const ulong Window64Size = 0x1_0000_0000;

    public PciRig(IPciBarAllocator? allocator = null)
    {
        Root = new PciRootBus(Mmio, allocator ?? new PciBarWindowAllocator(Window32Base, Window32Size, Window64Base, Window64Size));
        Pio.Register(PciRootBus.ConfigPortsBase, PciRootBus.ConfigPortsLength, Root.ConfigPorts, "pci-conf1");
        Mmio.Register(EcamBase, Root.Ecam.Size, Root.Ecam, "pci-ecam");
    }

    public DeviceBus Pio { get; } = new("pio");

    public DeviceBus Mmio { get; } = new("mmio");

    public PciRootBus Root { get; }

    public static ulong Ecam(int device, int function, int register) =>
        EcamBase + PciConfigAddress.ToEcamOffset(new PciAddress(0, (byte)device, (byte)function), register);

    public uint EcamRead32(int device, int register, int function = 0) => Mmio.Read32(Ecam(device, function, register));

    public ushort EcamRead16(int device, int register, int function = 0) => Mmio.Read16(Ecam(device, function, register));

    public byte EcamRead8(int device, int register, int function = 0) => Mmio.Read8(Ecam(device, function, register));

    public void EcamWrite32(int device, int register, uint value) => Mmio.Write32(Ecam(device, 0, register), value);

    public void EcamWrite16(int device, int register, ushort value) => Mmio.Write16(Ecam(device, 0, register), value);

    public void EcamWrite8(int device, int register, byte value) => Mmio.Write8(Ecam(device, 0, register), value);

    /// <summary>Configuration mechanism #1 read as Linux's pci_conf1_read issues it: address dword, then data at 0xCFC + (reg &amp; 3).</summary>
    public uint Conf1Read(int bus, int device, int function, int register, int length)
    {
        Pio.Write32(0xcf8, PciConfigAddress.ToConfigMechanism1(new PciAddress((byte)bus, (byte)device, (byte)function), register));
        ulong port = 0xcfc + (ulong)(register & 3);
        return length switch
        {
            1 => Pio.Read8(port),
            2 => Pio.Read16(port),
            _ => Pio.Read32(port),
        };
    }

    public void Conf1Write(int device, int register, int length, uint value)
    {
        Pio.Write32(0xcf8, PciConfigAddress.ToConfigMechanism1(new PciAddress(0, (byte)device, 0), register));
        ulong port = 0xcfc + (ulong)(register & 3);
        switch (length)
        {
            case 1: Pio.Write8(port, (byte)value); break;
            case 2: Pio.Write16(port, (ushort)value); break;
            default: Pio.Write32(port, value); break;
        }
    }

    /// <summary>Enable memory decoding (and bus mastering) as pci_enable_device does.</summary>
    public void EnableMemory(int device) =>
        EcamWrite16(device, PciRegs.PCI_COMMAND, (ushort)(EcamRead16(device, PciRegs.PCI_COMMAND) | PciRegs.PCI_COMMAND_MEMORY | PciRegs.PCI_COMMAND_MASTER));

    public void DisableMemory(int device) =>
        EcamWrite16(device, PciRegs.PCI_COMMAND, (ushort)(EcamRead16(device, PciRegs.PCI_COMMAND) & ~PciRegs.PCI_COMMAND_MEMORY));

    /// <summary>
    /// Walk the capability list the way Linux's pci_find_next_cap_ttl does: only with PCI_STATUS_CAP_LIST,
    /// from PCI_CAPABILITY_LIST, low two bits of every pointer masked, pointers below 0x40 end it, at most 48 hops.
    /// </summary>
    public List<(int Offset, byte Id)> WalkCapabilities(int device)
    {
        var found = new List<(int, byte)>();
        if ((EcamRead16(device, PciRegs.PCI_STATUS) & PciRegs.PCI_STATUS_CAP_LIST) == 0)
        {
            return found;
        }

        int position = EcamRead8(device, PciRegs.PCI_CAPABILITY_LIST);
        for (int ttl = 48; ttl > 0; ttl--)
        {
            if (position < 0x40)
            {
                break;
            }

            position &= ~3;
            ushort entry = EcamRead16(device, position);
            byte id = (byte)entry;
            if (id == 0xff)
            {
                break;
            }

            found.Add((position, id));
            position = entry >> 8;
        }

        return found;
    }
}
