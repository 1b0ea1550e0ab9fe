using System.Buffers.Binary;
using System.Text;

namespace KvmSharp.Vmm.Boot.Acpi;

/// <summary>
/// The ACPI tables a firmware-less Linux needs to find its CPUs and interrupt controllers (Debian's
/// kernels have no MP-table parser): RSDP -> XSDT -> FADT (a PC with legacy devices, the reset
/// register on the i8042 and PM1 blocks for poweroff), DSDT (\_S5, and the PCI root bridge when there
/// is one), MADT (one local APIC per vCPU, the in-kernel IOAPIC with ISA IRQs 1:1 as overrides, NMI on LINT1) and, with PCI, the MCFG of its ECAM.
/// </summary>
public static class AcpiTables
{
    /// <summary>Linux scans 0xE0000-0xFFFFF for the RSDP.</summary>
    public const ulong RsdpAddress = 0xE0000;
    public const ulong RegionEnd = 0x100000;
    /// <summary>PM1a event block (status, enable) and control block, in system I/O space.</summary>
    public const ushort Pm1EventBlock = 0x600, Pm1ControlBlock = 0x604, PmPortsLength = 8;
    public const byte SciInterrupt = 9;
    public const byte SleepTypeS5 = 5;
    private const uint LocalApicAddress = 0xFEE00000, IoApicAddress = 0xFEC00000;
    private const string OemId = "KVMSHP", OemTableId = "KVMSHARP";

    /// <summary>Build the tables for <paramref name="cpus"/> vCPUs, laid out from <see cref="RsdpAddress"/>.</summary>
    public static byte[] Build(int cpus, AcpiPciRoot? pci = null)
    {
        if (cpus < 1 || cpus > 254) throw new ArgumentOutOfRangeException(nameof(cpus), $"{cpus} vCPUs do not fit the MADT (1-254)");
        const int RsdpSize = 36;
        ulong xsdtAddress = Align(RsdpAddress + RsdpSize);
        byte[] dsdt = Dsdt(pci);
        byte[] madt = Madt(cpus);
        byte[]? mcfg = pci is null ? null : Mcfg(pci);
        int xsdtEntries = mcfg is null ? 2 : 3;
        ulong dsdtAddress = Align(xsdtAddress + 36 + (ulong)xsdtEntries * 8);
        ulong fadtAddress = Align(dsdtAddress + (ulong)dsdt.Length);
        ulong madtAddress = Align(fadtAddress + 276);
        ulong mcfgAddress = Align(madtAddress + (ulong)madt.Length);
        byte[] fadt = Fadt(dsdtAddress, msi: pci is not null);
        byte[] xsdt = Table("XSDT", 1, xsdtEntries * 8, body =>
        {
            BinaryPrimitives.WriteUInt64LittleEndian(body, fadtAddress);
            BinaryPrimitives.WriteUInt64LittleEndian(body[8..], madtAddress);
            if (mcfg is not null) BinaryPrimitives.WriteUInt64LittleEndian(body[16..], mcfgAddress);
        });

        ulong end = mcfg is null ? madtAddress + (ulong)madt.Length : mcfgAddress + (ulong)mcfg.Length;
        var blob = new byte[end - RsdpAddress];
        Rsdp(xsdtAddress).CopyTo(blob, 0);
        xsdt.CopyTo(blob, (int)(xsdtAddress - RsdpAddress));
        dsdt.CopyTo(blob, (int)(dsdtAddress - RsdpAddress));
        fadt.CopyTo(blob, (int)(fadtAddress - RsdpAddress));
        madt.CopyTo(blob, (int)(madtAddress - RsdpAddress));
        mcfg?.CopyTo(blob, (int)(mcfgAddress - RsdpAddress));
        if (RsdpAddress + (ulong)blob.Length > RegionEnd) throw new InvalidOperationException("ACPI tables overflow the BIOS area");
        return blob;
    }

    private static byte[] Rsdp(ulong xsdtAddress)
    {
        var rsdp = new byte[36];
        Encoding.ASCII.GetBytes("RSD PTR ").CopyTo(rsdp, 0);
        Encoding.ASCII.GetBytes(OemId).CopyTo(rsdp, 9);
        rsdp[15] = 2;                                                      // ACPI 2.0+: use the XSDT
        BinaryPrimitives.WriteUInt32LittleEndian(rsdp.AsSpan(20), 36);
        BinaryPrimitives.WriteUInt64LittleEndian(rsdp.AsSpan(24), xsdtAddress);
        rsdp[8] = FirmwareChecksum.Compute(rsdp.AsSpan(0, 20));
        rsdp[32] = FirmwareChecksum.Compute(rsdp);
        return rsdp;
    }

    // DefinitionBlock: Name (_S5, Package () { 5, 5 }), the SLP_TYP values for poweroff; with PCI, the
    // root bridge \_SB.PCI0 (PNP0A08, compatible PNP0A03) and the windows it forwards in _CRS, so Linux
    // finds the bus through ACPI and its ECAM through the MCFG.
    private static byte[] Dsdt(AcpiPciRoot? pci)
    {
        byte[] sleep = Aml.Name("_S5_", Aml.Package(Aml.Integer(SleepTypeS5), [0x0A, SleepTypeS5]));
        byte[] body = pci is null ? sleep : [.. sleep, .. Aml.Scope("\\_SB_", PciRootBridge(pci))];
        return Table("DSDT", 2, body.Length, span => body.CopyTo(span));
    }

    /// <summary>Device (PCI0) with _HID, _CID, _SEG, _BBN, _UID and _CRS (bus range, the configuration ports, I/O and memory windows).</summary>
    public static byte[] PciRootBridge(AcpiPciRoot pci)
    {
        var resources = new List<byte[]> { Aml.WordBusNumber(pci.FirstBus, pci.LastBus), Aml.Io(0xCF8, 8) };
        foreach (var window in pci.PortWindows) resources.Add(Aml.WordIo((ushort)window.Start, (ushort)window.Last));
        foreach (var window in pci.Mmio32Windows) resources.Add(Aml.DWordMemory((uint)window.Start, (uint)window.Last));
        if (pci.Mmio64Window is { } high) resources.Add(Aml.QWordMemory(high.Start, high.Last));
        return Aml.Device("PCI0",
            Aml.Name("_HID", Aml.EisaId("PNP0A08")),
            Aml.Name("_CID", Aml.EisaId("PNP0A03")),
            Aml.Name("_SEG", Aml.Integer(0)),
            Aml.Name("_BBN", Aml.Integer(pci.FirstBus)),
            Aml.Name("_UID", Aml.Integer(0)),
            Aml.Name("_CRS", Aml.ResourceTemplate([.. resources])));
    }

    // MCFG: one allocation for segment 0's buses, at the ECAM base.
    private static byte[] Mcfg(AcpiPciRoot pci) => Table("MCFG", 1, 8 + 16, body =>
    {
        BinaryPrimitives.WriteUInt64LittleEndian(body[8..], pci.EcamBase);
        BinaryPrimitives.WriteUInt16LittleEndian(body[16..], 0);   // PCI segment group
        body[18] = pci.FirstBus;
        body[19] = pci.LastBus;
    });

    private static byte[] Fadt(ulong dsdtAddress, bool msi) => Table("FACP", 6, 276 - 36, body =>
    {
        // Offsets below are from the start of the table, minus the 36-byte header. A full (not
        // hardware-reduced) PC: Linux then keeps its legacy PIC and ISA IRQ numbers, which the 8250
        // and i8042 drivers use directly; the PM1 blocks give poweroff a register to write.
        const int Header = 36;
        const uint ResetRegisterSupported = 1u << 10, PowerButtonIsNotFixed = 1u << 4, SleepButtonIsNotFixed = 1u << 5;
        const ushort LegacyDevices = 1 << 0, Has8042 = 1 << 1, NoVga = 1 << 2, NoMsi = 1 << 3;
        BinaryPrimitives.WriteUInt32LittleEndian(body[(40 - Header)..], (uint)dsdtAddress);
        BinaryPrimitives.WriteUInt16LittleEndian(body[(46 - Header)..], SciInterrupt);
        BinaryPrimitives.WriteUInt32LittleEndian(body[(56 - Header)..], Pm1EventBlock);
        BinaryPrimitives.WriteUInt32LittleEndian(body[(64 - Header)..], Pm1ControlBlock);
        body[88 - Header] = 4;                                              // PM1_EVT_LEN: status + enable
        body[89 - Header] = 2;                                              // PM1_CNT_LEN
        // Without PCI there is nothing to take MSIs; with it, IAPC_BOOT_ARCH must not say "MSI not supported".
        BinaryPrimitives.WriteUInt16LittleEndian(body[(109 - Header)..], (ushort)(LegacyDevices | Has8042 | NoVga | (msi ? 0 : NoMsi)));
        BinaryPrimitives.WriteUInt32LittleEndian(body[(112 - Header)..], ResetRegisterSupported | PowerButtonIsNotFixed | SleepButtonIsNotFixed);
        Gas(body[(116 - Header)..], 0x64, 8);                               // reset register: the i8042's command port
        body[128 - Header] = 0xFE;                                          // ... and its "pulse reset" command
        body[131 - Header] = 1;                                             // FADT minor version 6.1
        BinaryPrimitives.WriteUInt64LittleEndian(body[(140 - Header)..], dsdtAddress);
        Gas(body[(148 - Header)..], Pm1EventBlock, 32);
        Gas(body[(172 - Header)..], Pm1ControlBlock, 16);
        Encoding.ASCII.GetBytes("KVMSHARP").CopyTo(body[(268 - Header)..]); // hypervisor vendor identity
    });

    private static byte[] Madt(int cpus)
    {
        var entries = new List<byte[]>();
        for (int cpu = 0; cpu < cpus; cpu++) entries.Add([0, 8, (byte)cpu, (byte)cpu, 1, 0, 0, 0]);   // local APIC, enabled
        var ioApic = new byte[12];
        ioApic[0] = 1;
        ioApic[1] = 12;
        ioApic[2] = (byte)cpus;                                                                      // IOAPIC id after the CPUs
        BinaryPrimitives.WriteUInt32LittleEndian(ioApic.AsSpan(4), IoApicAddress);
        entries.Add(ioApic);
        // ISA IRQs 1:1 onto IOAPIC pins, as KVM's default routing wires them (the in-kernel PIT is on
        // pin 0, not 2 as on QEMU's board), edge/high ("conforming").
        for (byte irq = 0; irq < 16; irq++)
        {
            if (irq is 2 or SciInterrupt) continue; // the PIC cascade; the SCI keeps Linux's level/low default
            var overrideEntry = new byte[10];
            overrideEntry[0] = 2;
            overrideEntry[1] = 10;
            overrideEntry[2] = 0;     // ISA bus
            overrideEntry[3] = irq;   // source
            BinaryPrimitives.WriteUInt32LittleEndian(overrideEntry.AsSpan(4), irq);
            entries.Add(overrideEntry);
        }
        entries.Add([4, 6, 0xFF, 0, 0, 1]);                                                          // NMI on LINT1 of every CPU
        int length = entries.Sum(e => e.Length);
        return Table("APIC", 4, 8 + length, body =>
        {
            BinaryPrimitives.WriteUInt32LittleEndian(body, LocalApicAddress);
            BinaryPrimitives.WriteUInt32LittleEndian(body[4..], 1);                                 // PCAT_COMPAT: 8259s present
            int offset = 8;
            foreach (var entry in entries)
            {
                entry.CopyTo(body[offset..]);
                offset += entry.Length;
            }
        });
    }

    // A Generic Address Structure for an 8-bit port in system I/O space.
    private static void Gas(Span<byte> gas, ushort port, byte bits)
    {
        gas[0] = 1;   // system I/O
        gas[1] = bits;
        gas[2] = 0;   // bit offset
        gas[3] = (bits / 8) switch { 1 => 1, 2 => 2, _ => 3 }; // access size: byte, word, dword
        BinaryPrimitives.WriteUInt64LittleEndian(gas[4..], port);
    }

    private delegate void BodyWriter(Span<byte> body);

    private static byte[] Table(string signature, byte revision, int bodyLength, BodyWriter write)
    {
        var table = new byte[36 + bodyLength];
        Encoding.ASCII.GetBytes(signature).CopyTo(table, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(table.AsSpan(4), (uint)table.Length);
        table[8] = revision;
        Encoding.ASCII.GetBytes(OemId).CopyTo(table, 10);
        Encoding.ASCII.GetBytes(OemTableId).CopyTo(table, 16);
        BinaryPrimitives.WriteUInt32LittleEndian(table.AsSpan(24), 1);
        Encoding.ASCII.GetBytes("KSHP").CopyTo(table, 28);
        BinaryPrimitives.WriteUInt32LittleEndian(table.AsSpan(32), 1);
        write(table.AsSpan(36));
        table[9] = FirmwareChecksum.Compute(table);
        return table;
    }

    private static ulong Align(ulong address) => (address + 15) & ~15UL;
}
