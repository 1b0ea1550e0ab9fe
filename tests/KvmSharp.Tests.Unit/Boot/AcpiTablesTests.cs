using System.Buffers.Binary;
using System.Text;
using KvmSharp.Vmm.Boot.Acpi;
using Xunit;

namespace KvmSharp.Tests.Unit.Boot;

public sealed class AcpiTablesTests
{
    private static byte Sum(ReadOnlySpan<byte> bytes)
    {
        byte sum = 0;
        foreach (byte b in bytes) sum += b;
        return sum;
    }

    private static ReadOnlySpan<byte> TableAt(byte[] blob, ulong address)
    {
        var table = blob.AsSpan((int)(address - AcpiTables.RsdpAddress));
        return table[..(int)BinaryPrimitives.ReadUInt32LittleEndian(table[4..])];
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    public void Every_table_is_reachable_from_the_rsdp_and_checksums_to_zero(int cpus)
    {
        var blob = AcpiTables.Build(cpus);
        Assert.Equal("RSD PTR ", Encoding.ASCII.GetString(blob, 0, 8));
        Assert.Equal(0, Sum(blob.AsSpan(0, 20)));
        Assert.Equal(0, Sum(blob.AsSpan(0, 36)));

        var xsdt = TableAt(blob, BinaryPrimitives.ReadUInt64LittleEndian(blob.AsSpan(24)));
        Assert.Equal("XSDT", Encoding.ASCII.GetString(xsdt[..4]));
        Assert.Equal(0, Sum(xsdt));
        var signatures = new List<string>();
        for (int i = 36; i < xsdt.Length; i += 8)
        {
            var table = TableAt(blob, BinaryPrimitives.ReadUInt64LittleEndian(xsdt[i..]));
            Assert.Equal(0, Sum(table));
            signatures.Add(Encoding.ASCII.GetString(table[..4]));
            if (signatures[^1] == "FACP")
            {
                var dsdt = TableAt(blob, BinaryPrimitives.ReadUInt64LittleEndian(table[140..]));
                Assert.Equal("DSDT", Encoding.ASCII.GetString(dsdt[..4]));
                Assert.Equal(0, Sum(dsdt));
                Assert.Equal(AcpiTables.Pm1ControlBlock, BinaryPrimitives.ReadUInt32LittleEndian(table[64..]));
            }
            if (signatures[^1] == "APIC")
            {
                int lapics = 0;
                for (int offset = 44; offset < table.Length; offset += table[offset + 1])
                    if (table[offset] == 0) Assert.Equal(lapics++, table[offset + 3]);
                Assert.Equal(cpus, lapics);
            }
        }
        Assert.Equal(["FACP", "APIC"], signatures);
    }

    [Fact]
    public void Poweroff_is_slp_en_with_the_s5_type_on_pm1a_control()
    {
        bool off = false;
        var pm = new AcpiSleepControl(() => off = true);
        ulong control = AcpiTables.Pm1ControlBlock - AcpiTables.Pm1EventBlock;
        pm.Write(control, BitConverter.GetBytes((ushort)(AcpiTables.SleepTypeS5 << 10)));
        Assert.False(off);                                  // SLP_EN not set
        pm.Write(control, BitConverter.GetBytes((ushort)((3 << 10) | (1 << 13))));
        Assert.False(off);                                  // another sleep type
        pm.Write(control, BitConverter.GetBytes((ushort)((AcpiTables.SleepTypeS5 << 10) | (1 << 13))));
        Assert.True(off);
        var read = new byte[2];
        pm.Read(control, read);
        Assert.Equal(1, read[0] & 1);                       // SCI_EN: ACPI is always on
    }
}
