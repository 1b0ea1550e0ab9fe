using System.Buffers.Binary;
using System.Text;
using KvmSharp.Vmm.Boot.Acpi;
using KvmSharp.Vmm.Boot.Linux;
using KvmSharp.Vmm.Machine.Allocation;
using Xunit;

namespace KvmSharp.Tests.Unit.Boot;

/// <summary>
/// The PCI part of the firmware tables, parsed back from the bytes: MCFG (ECAM of segment 0), the
/// DSDT's root bridge (PNP0A08 / PNP0A03, _SEG, _BBN, _UID, _CRS walked descriptor by descriptor),
/// the FADT no longer saying "no MSI", and the e820 map reserving ECAM.
/// </summary>
public sealed class PciAcpiTests
{
    private static readonly MachineResources Resources = new(512UL << 20);
    private static readonly AcpiPciRoot Pci = AcpiPciRoot.From(Resources);

    private static byte Sum(ReadOnlySpan<byte> bytes)
    {
        byte sum = 0;
        foreach (byte b in bytes) sum += b;
        return sum;
    }

    private static Dictionary<string, byte[]> Tables(byte[] blob)
    {
        byte[] At(ulong address)
        {
            var table = blob.AsSpan((int)(address - AcpiTables.RsdpAddress));
            return table[..(int)BinaryPrimitives.ReadUInt32LittleEndian(table[4..])].ToArray();
        }
        var xsdt = At(BinaryPrimitives.ReadUInt64LittleEndian(blob.AsSpan(24)));
        var tables = new Dictionary<string, byte[]> { ["XSDT"] = xsdt };
        for (int i = 36; i < xsdt.Length; i += 8)
        {
            var table = At(BinaryPrimitives.ReadUInt64LittleEndian(xsdt.AsSpan(i)));
            tables[Encoding.ASCII.GetString(table, 0, 4)] = table;
        }
        tables["DSDT"] = At(BinaryPrimitives.ReadUInt64LittleEndian(tables["FACP"].AsSpan(140)));
        return tables;
    }

    [Fact]
    public void With_pci_the_xsdt_lists_an_mcfg_for_the_ecam_of_segment_0_and_every_table_checksums()
    {
        var tables = Tables(AcpiTables.Build(2, Pci));
        Assert.Equal(["XSDT", "FACP", "APIC", "MCFG", "DSDT"], tables.Keys);
        Assert.All(tables.Values, t => Assert.Equal(0, Sum(t)));
        var mcfg = tables["MCFG"];
        Assert.Equal(36 + 8 + 16, mcfg.Length);
        Assert.Equal(BinaryPrimitives.ReadUInt32LittleEndian(mcfg.AsSpan(4)), (uint)mcfg.Length);
        Assert.Equal(MachineResources.EcamBase, BinaryPrimitives.ReadUInt64LittleEndian(mcfg.AsSpan(44)));
        Assert.Equal(0, BinaryPrimitives.ReadUInt16LittleEndian(mcfg.AsSpan(52)));
        Assert.Equal(0, mcfg[54]);
        Assert.Equal(MachineResources.PciBusCount - 1, mcfg[55]);
    }

    [Fact]
    public void The_fadt_allows_msi_only_when_there_is_pci()
    {
        const int IapcBootArch = 109, NoMsi = 1 << 3;
        Assert.Equal(NoMsi, BinaryPrimitives.ReadUInt16LittleEndian(Tables(AcpiTables.Build(1))["FACP"].AsSpan(IapcBootArch)) & NoMsi);
        Assert.Equal(0, BinaryPrimitives.ReadUInt16LittleEndian(Tables(AcpiTables.Build(1, Pci))["FACP"].AsSpan(IapcBootArch)) & NoMsi);
        Assert.DoesNotContain("MCFG", Tables(AcpiTables.Build(1)).Keys);
    }

    [Fact]
    public void The_dsdt_holds_s5_and_a_root_bridge_whose_crs_lists_buses_ports_and_both_memory_windows()
    {
        var dsdt = Tables(AcpiTables.Build(1, Pci))["DSDT"];
        var aml = new AmlReader(dsdt, 36);
        Assert.Equal("_S5_", aml.Name(out var s5));
        Assert.Equal([0x12, 0x06, 0x02, 0x0A, 0x05, 0x0A, 0x05], s5.ToArray());
        var scope = aml.Scope(out string scopeName);
        Assert.Equal("\\_SB_", scopeName);
        Assert.True(aml.AtEnd, "the scope must end exactly where the table ends");

        var device = scope.Device(out string deviceName);
        Assert.Equal("PCI0", deviceName);
        Assert.True(scope.AtEnd);
        var names = new Dictionary<string, byte[]>();
        while (!device.AtEnd) names[device.Name(out var value)] = value.ToArray();
        Assert.Equal(["_HID", "_CID", "_SEG", "_BBN", "_UID", "_CRS"], names.Keys);
        Assert.Equal([0x0C, 0x41, 0xD0, 0x0A, 0x08], names["_HID"]); // EisaId("PNP0A08")
        Assert.Equal([0x0C, 0x41, 0xD0, 0x0A, 0x03], names["_CID"]); // EisaId("PNP0A03")
        Assert.Equal([0x00], names["_SEG"]);
        Assert.Equal([0x00], names["_BBN"]);
        Assert.Equal([0x00], names["_UID"]);

        var resources = ParseResourceTemplate(names["_CRS"]);
        Assert.Equal(("bus", 0UL, (ulong)MachineResources.PciBusCount - 1), resources[0]);
        Assert.Equal(("io-fixed", 0xCF8UL, 0xCFFUL), resources[1]);
        Assert.Equal(("io", 0x0000UL, 0x0CF7UL), resources[2]);
        Assert.Equal(("io", 0x0D00UL, 0xFFFFUL), resources[3]);
        var memory32 = resources.Where(r => r.Kind == "mem32").Select(r => new AddressWindow(r.Min, r.Max + 1)).ToList();
        Assert.Equal(Resources.Mmio32.Windows, memory32);
        var memory64 = Assert.Single(resources, r => r.Kind == "mem64");
        Assert.Equal((Resources.Mmio64.Window.Start, Resources.Mmio64.Window.Last), (memory64.Min, memory64.Max));
        Assert.DoesNotContain(memory32, w => w.Overlaps(Resources.Ecam) || w.Overlaps(new AddressWindow(0xFEC0_0000, 0xFEC0_1000)) || w.Overlaps(new AddressWindow(0xFEE0_0000, 0xFEE0_1000)));
    }

    [Fact]
    public void Without_pci_the_dsdt_is_only_s5()
    {
        var dsdt = Tables(AcpiTables.Build(1))["DSDT"];
        var aml = new AmlReader(dsdt, 36);
        Assert.Equal("_S5_", aml.Name(out _));
        Assert.True(aml.AtEnd);
    }

    [Theory]
    [InlineData(10)]
    [InlineData(62)]       // the largest single-byte PkgLength body
    [InlineData(63)]
    [InlineData(5000)]
    [InlineData(70000)]
    public void Package_lengths_count_their_own_bytes_in_every_encoding_size(int bodyLength)
    {
        var encoded = Aml.WithPackageLength(new byte[bodyLength]);
        var reader = new AmlReader(encoded, 0);
        int length = reader.PackageLength(out int lengthBytes);
        Assert.Equal(encoded.Length, length);
        Assert.Equal(bodyLength, encoded.Length - lengthBytes);
    }

    [Fact]
    public void E820_reserves_ecam_in_address_order()
    {
        var map = LinuxLoader.BuildE820([(0, 3UL << 30), (4UL << 30, 1UL << 30)], Pci);
        var ecam = Assert.Single(map, e => e.Address == MachineResources.EcamBase);
        Assert.Equal(E820Type.Reserved, ecam.Type);
        Assert.Equal(MachineResources.EcamSize, ecam.Size);
        Assert.Equal(map.OrderBy(e => e.Address).ToList(), map);
        Assert.DoesNotContain(LinuxLoader.BuildE820([(0, 64UL << 20)]), e => e.Address == MachineResources.EcamBase);
    }

    // Walks the descriptors of a Buffer holding a ResourceTemplate, up to the End Tag.
    private static List<(string Kind, ulong Min, ulong Max)> ParseResourceTemplate(byte[] buffer)
    {
        Assert.Equal(0x11, buffer[0]);
        var reader = new AmlReader(buffer, 1);
        int packageLength = reader.PackageLength(out int lengthBytes);
        Assert.Equal(buffer.Length - 1, packageLength);
        int offset = 1 + lengthBytes;
        // The buffer size: a BytePrefix or WordPrefix integer.
        (int size, int sizeBytes) = buffer[offset] switch
        {
            0x0A => (buffer[offset + 1], 2),
            0x0B => (BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(offset + 1)), 3),
            var op => throw new InvalidDataException($"buffer size opcode 0x{op:x2}"),
        };
        var bytes = buffer.AsSpan(offset + sizeBytes);
        Assert.Equal(size, bytes.Length);
        var result = new List<(string, ulong, ulong)>();
        int i = 0;
        while (true)
        {
            byte tag = bytes[i];
            if (tag == 0x79)
            {
                Assert.Equal(i + 2, bytes.Length); // End Tag closes the template exactly
                return result;
            }
            if (tag == 0x47)
            {
                result.Add(("io-fixed", BinaryPrimitives.ReadUInt16LittleEndian(bytes[(i + 2)..]), BinaryPrimitives.ReadUInt16LittleEndian(bytes[(i + 2)..]) + (ulong)bytes[i + 7] - 1));
                i += 8;
                continue;
            }
            int length = BinaryPrimitives.ReadUInt16LittleEndian(bytes[(i + 1)..]);
            var d = bytes.Slice(i, 3 + length);
            Assert.Equal(0x0C, d[4]); // producer, MinFixed, MaxFixed
            switch (tag)
            {
                case 0x88:
                    Assert.Equal(13, length);
                    ulong wMin = BinaryPrimitives.ReadUInt16LittleEndian(d[8..]), wMax = BinaryPrimitives.ReadUInt16LittleEndian(d[10..]);
                    Assert.Equal(wMax - wMin + 1, BinaryPrimitives.ReadUInt16LittleEndian(d[14..]));
                    result.Add((d[3] == 2 ? "bus" : d[3] == 1 ? "io" : "?", wMin, wMax));
                    break;
                case 0x87:
                    Assert.Equal(23, length);
                    ulong dMin = BinaryPrimitives.ReadUInt32LittleEndian(d[10..]), dMax = BinaryPrimitives.ReadUInt32LittleEndian(d[14..]);
                    Assert.Equal(dMax - dMin + 1, BinaryPrimitives.ReadUInt32LittleEndian(d[22..]));
                    result.Add(("mem32", dMin, dMax));
                    break;
                case 0x8A:
                    Assert.Equal(43, length);
                    ulong qMin = BinaryPrimitives.ReadUInt64LittleEndian(d[14..]), qMax = BinaryPrimitives.ReadUInt64LittleEndian(d[22..]);
                    Assert.Equal(qMax - qMin + 1, BinaryPrimitives.ReadUInt64LittleEndian(d[38..]));
                    result.Add(("mem64", qMin, qMax));
                    break;
                default:
                    Assert.Fail($"unexpected resource descriptor 0x{tag:x2}");
                    break;
            }
            i += 3 + length;
        }
    }

    /// <summary>Reads the AML subset the DSDT uses: Name, Scope, Device and PkgLength.</summary>
    private sealed class AmlReader(byte[] bytes, int start, int? end = null)
    {
        private int _offset = start;
        private readonly int _end = end ?? bytes.Length;

        public bool AtEnd => _offset == _end;

        public int PackageLength(out int lengthBytes)
        {
            byte lead = bytes[_offset];
            int follow = lead >> 6;
            lengthBytes = 1 + follow;
            if (follow == 0) return lead & 0x3F;
            int value = lead & 0x0F;
            for (int i = 1; i <= follow; i++) value |= bytes[_offset + i] << (4 + 8 * (i - 1));
            return value;
        }

        public string Name(out ReadOnlySpan<byte> value)
        {
            Assert.Equal(0x08, bytes[_offset]);
            string name = Encoding.ASCII.GetString(bytes, _offset + 1, 4);
            int valueStart = _offset + 5;
            int valueLength = ObjectLength(valueStart);
            value = bytes.AsSpan(valueStart, valueLength);
            _offset = valueStart + valueLength;
            Assert.True(_offset <= _end);
            return name;
        }

        public AmlReader Scope(out string name)
        {
            Assert.Equal(0x10, bytes[_offset]);
            _offset++;
            return Package(out name);
        }

        public AmlReader Device(out string name)
        {
            Assert.Equal([0x5B, 0x82], bytes.AsSpan(_offset, 2).ToArray());
            _offset += 2;
            return Package(out name);
        }

        private AmlReader Package(out string name)
        {
            int packageStart = _offset;
            int length = PackageLength(out int lengthBytes);
            int nameStart = packageStart + lengthBytes;
            bool root = bytes[nameStart] == 0x5C;
            name = (root ? "\\" : "") + Encoding.ASCII.GetString(bytes, nameStart + (root ? 1 : 0), 4);
            int packageEnd = packageStart + length;
            Assert.True(packageEnd <= _end, $"package ends at {packageEnd}, past its parent's end {_end}");
            _offset = packageEnd;
            return new AmlReader(bytes, nameStart + (root ? 5 : 4), packageEnd);
        }

        // Length of a data object: an integer constant, a Buffer or a Package (PkgLength after the opcode).
        private int ObjectLength(int at) => bytes[at] switch
        {
            0x00 or 0x01 or 0xFF => 1,
            0x0A => 2,
            0x0B => 3,
            0x0C => 5,
            0x0E => 9,
            0x11 or 0x12 => 1 + new AmlReader(bytes, at + 1).PackageLength(out _),
            var op => throw new InvalidDataException($"unexpected AML opcode 0x{op:x2} at {at}"),
        };
    }
}
