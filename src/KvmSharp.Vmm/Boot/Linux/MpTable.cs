using System.Buffers.Binary;
using System.Text;

namespace KvmSharp.Vmm.Boot.Linux;

/// <summary>
/// An Intel MultiProcessor Specification 1.4 table: one processor entry per vCPU (APIC id = vCPU
/// id, vCPU 0 the bootstrap processor), an ISA bus, the in-kernel IOAPIC, ISA IRQs routed 1:1 to
/// IOAPIC pins (as KVM's default GSI routing does), ExtINT on LINT0 and NMI on LINT1. Linux finds it
/// through the floating pointer in the EBDA and brings up every CPU listed.
/// </summary>
public static class MpTable
{
    public const uint LocalApicAddress = 0xFEE00000;
    public const uint IoApicAddress = 0xFEC00000;
    private const int IoApicPins = 24;

    public static byte[] Build(ulong address, int cpus)
    {
        if (cpus < 1 || cpus > 254) throw new ArgumentOutOfRangeException(nameof(cpus), $"{cpus} vCPUs do not fit an MP table (1-254)");
        byte ioApicId = (byte)cpus;
        var entries = new List<byte[]>();
        for (int cpu = 0; cpu < cpus; cpu++)
        {
            var processor = new byte[20];
            processor[0] = 0;                        // processor entry
            processor[1] = (byte)cpu;                // local APIC id
            processor[2] = 0x14;                     // local APIC version
            processor[3] = (byte)(cpu == 0 ? 0x03 : 0x01); // enabled, bootstrap processor
            BinaryPrimitives.WriteUInt32LittleEndian(processor.AsSpan(4), 0x600);         // family 6 signature
            BinaryPrimitives.WriteUInt32LittleEndian(processor.AsSpan(8), 0x201);         // FPU and APIC present
            entries.Add(processor);
        }
        var bus = new byte[8];
        bus[0] = 1;
        Encoding.ASCII.GetBytes("ISA   ").CopyTo(bus, 2);
        entries.Add(bus);
        var ioApic = new byte[8];
        ioApic[0] = 2;
        ioApic[1] = ioApicId;
        ioApic[2] = 0x11;
        ioApic[3] = 1; // enabled
        BinaryPrimitives.WriteUInt32LittleEndian(ioApic.AsSpan(4), IoApicAddress);
        entries.Add(ioApic);
        for (int irq = 0; irq < IoApicPins; irq++)
            entries.Add([3, 0, 0, 0, 0, (byte)irq, ioApicId, (byte)irq]);         // INT, conforming, ISA irq -> pin
        entries.Add([4, 3, 0, 0, 0, 0, 0x00, 0]);                                  // ExtINT -> LINT0 of the BSP
        entries.Add([4, 1, 0, 0, 0, 0, 0xFF, 1]);                                  // NMI -> LINT1 of every CPU

        const int FloatingSize = 16, HeaderSize = 44;
        int tableLength = HeaderSize + entries.Sum(e => e.Length);
        var table = new byte[FloatingSize + tableLength];
        var floating = table.AsSpan(0, FloatingSize);
        Encoding.ASCII.GetBytes("_MP_").CopyTo(floating);
        BinaryPrimitives.WriteUInt32LittleEndian(floating[4..], (uint)(address + FloatingSize));
        floating[8] = 1;   // length in 16-byte units
        floating[9] = 4;   // spec revision 1.4
        floating[10] = FirmwareChecksum.Compute(floating);

        var header = table.AsSpan(FloatingSize, tableLength);
        Encoding.ASCII.GetBytes("PCMP").CopyTo(header);
        BinaryPrimitives.WriteUInt16LittleEndian(header[4..], (ushort)tableLength);
        header[6] = 4;
        Encoding.ASCII.GetBytes("KVMSHARP").CopyTo(header[8..]);
        Encoding.ASCII.GetBytes("KVMSHARP MP").CopyTo(header[16..]);
        BinaryPrimitives.WriteUInt16LittleEndian(header[34..], (ushort)entries.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(header[36..], LocalApicAddress);
        int offset = HeaderSize;
        foreach (var entry in entries)
        {
            entry.CopyTo(header[offset..]);
            offset += entry.Length;
        }
        header[7] = FirmwareChecksum.Compute(header);
        return table;
    }
}
