using KvmSharp.Vmm.Machine.Allocation;

namespace KvmSharp.Vmm.Boot.Acpi;

/// <summary>
/// The PCI root complex as the firmware tables describe it: ECAM for buses FirstBus..LastBus of
/// segment 0 (MCFG, and reserved in e820), and the windows the root bridge forwards (DSDT _CRS).
/// </summary>
public sealed record AcpiPciRoot(
    ulong EcamBase,
    byte FirstBus,
    byte LastBus,
    IReadOnlyList<AddressWindow> PortWindows,
    IReadOnlyList<AddressWindow> Mmio32Windows,
    AddressWindow? Mmio64Window)
{
    /// <summary>Bytes of ECAM: 1 MiB per bus.</summary>
    public ulong EcamSize => (ulong)(LastBus - FirstBus + 1) << 20;

    /// <summary>I/O ports a PC root bridge forwards: everything but the configuration ports 0xCF8-0xCFF.</summary>
    public static readonly IReadOnlyList<AddressWindow> PcPortWindows = [new(0x0000, 0x0CF8), new(0x0D00, 0x1_0000)];

    /// <summary>The description of <paramref name="resources"/>' PCI root: its ECAM, the PC port windows and its MMIO windows.</summary>
    public static AcpiPciRoot From(MachineResources resources) => new(
        resources.Ecam.Start, 0, (byte)(MachineResources.PciBusCount - 1),
        PcPortWindows, resources.Mmio32.Windows, resources.Mmio64.Window);
}
