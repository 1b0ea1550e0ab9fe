using KvmSharp.Kvm.Interop;

namespace KvmSharp.Vmm.Machine.Allocation;

/// <summary>
/// The machine's address map beyond RAM and what devices may take from it: the 32-bit PCI window in
/// the hole below 4 GiB (minus ECAM and the fixed x86 ranges), the 64-bit window above the end of RAM,
/// PCI I/O ports, GSIs above the irqchip's pins, and PCI slots on bus 0 (slot 0 is the host bridge).
/// The ACPI tables describe exactly these windows to the guest.
/// </summary>
public sealed class MachineResources
{
    /// <summary>Where the PCI hole starts: RAM below 4 GiB ends here.</summary>
    public const ulong PciHoleStart = VirtualMachine.LowRamLimit;
    public const ulong FourGiB = 1UL << 32;

    /// <summary>PCI Express enhanced configuration space (ECAM): 1 MiB per bus, buses 0..<see cref="PciBusCount"/>-1.</summary>
    public const ulong EcamBase = 0xE000_0000;
    public const int PciBusCount = 1;
    public const ulong EcamSize = (ulong)PciBusCount << 20;

    /// <summary>The fixed x86 ranges of the hole: IOAPIC, HPET and LAPIC (0xFEC00000-0xFEFFFFFF), and from the TSS/identity-map pages (0xFFFBC000) up, the BIOS area.</summary>
    public static readonly IReadOnlyList<(AddressWindow Range, string Owner)> FixedHoleRanges =
    [
        (new AddressWindow(0xFEC0_0000, 0xFF00_0000), "IOAPIC, HPET and LAPIC"),
        (new AddressWindow(0xFFFB_C000, FourGiB), "TSS and identity-map pages, BIOS area"),
    ];

    /// <summary>Size of the 64-bit window (it starts at the first GiB boundary above RAM).</summary>
    public const ulong Mmio64Size = 32UL << 30;

    /// <summary>PCI I/O port window handed to BARs: above the legacy ISA ports and the configuration ports.</summary>
    public static readonly AddressWindow PciPortWindow = new(0xC000, 0x1_0000);

    /// <summary>The GSIs MSI routes may use: above KVM's 24 irqchip pins.</summary>
    public const uint FirstMsiGsi = KvmIrqRouting.KVM_IOAPIC_NUM_PINS;

    public MachineResources(ulong memoryBytes, uint maxGsi = 1023)
    {
        ulong ramEnd = memoryBytes > PciHoleStart ? VirtualMachine.HighRamBase + (memoryBytes - PciHoleStart) : FourGiB;
        ulong mmio64Start = (ramEnd + (1UL << 30) - 1) & ~((1UL << 30) - 1);
        Ecam = new AddressWindow(EcamBase, EcamBase + EcamSize);
        Mmio32 = new AddressAllocator("mmio32", new AddressWindow(PciHoleStart, FourGiB), [(Ecam, "PCI ECAM"), .. FixedHoleRanges]);
        Mmio64 = new AddressAllocator("mmio64", new AddressWindow(mmio64Start, mmio64Start + Mmio64Size));
        Ports = new AddressAllocator("pci-ports", PciPortWindow);
        Gsis = new NumberAllocator("gsi", FirstMsiGsi, maxGsi);
        PciSlots = new NumberAllocator("pci-slot", 1, 31);
    }

    /// <summary>ECAM of the PCI root (reserved in e820 and listed in the MCFG).</summary>
    public AddressWindow Ecam { get; }

    public AddressAllocator Mmio32 { get; }
    public AddressAllocator Mmio64 { get; }
    public AddressAllocator Ports { get; }
    public NumberAllocator Gsis { get; }

    /// <summary>Device numbers on bus 0; 0 is the host bridge.</summary>
    public NumberAllocator PciSlots { get; }
}
