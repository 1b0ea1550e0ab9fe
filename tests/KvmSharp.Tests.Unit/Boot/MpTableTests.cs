using System.Buffers.Binary;
using System.Text;
using KvmSharp.Vmm.Boot.Linux;
using Xunit;

namespace KvmSharp.Tests.Unit.Boot;

public sealed class MpTableTests
{
    private static byte Sum(ReadOnlySpan<byte> bytes)
    {
        byte sum = 0;
        foreach (byte b in bytes) sum += b;
        return sum;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(8)]
    public void Lists_every_vcpu_with_the_first_as_bootstrap_processor_and_checksums_to_zero(int cpus)
    {
        const ulong Address = 0x9FC00;
        var table = MpTable.Build(Address, cpus);

        Assert.Equal("_MP_", Encoding.ASCII.GetString(table, 0, 4));
        Assert.Equal((uint)(Address + 16), BinaryPrimitives.ReadUInt32LittleEndian(table.AsSpan(4)));
        Assert.Equal(0, Sum(table.AsSpan(0, 16)));

        var config = table.AsSpan(16);
        Assert.Equal("PCMP", Encoding.ASCII.GetString(config[..4]));
        int length = BinaryPrimitives.ReadUInt16LittleEndian(config[4..]);
        Assert.Equal(table.Length - 16, length);
        Assert.Equal(0, Sum(config[..length]));
        Assert.Equal(MpTable.LocalApicAddress, BinaryPrimitives.ReadUInt32LittleEndian(config[36..]));

        // Walk the entries: processors first.
        int offset = 44, processors = 0, ioApics = 0, interrupts = 0;
        int count = BinaryPrimitives.ReadUInt16LittleEndian(config[34..]);
        for (int i = 0; i < count; i++)
        {
            byte type = config[offset];
            if (type == 0)
            {
                Assert.Equal(processors, config[offset + 1]);                        // APIC id = vCPU id
                Assert.Equal(processors == 0 ? 3 : 1, config[offset + 3]);           // BSP flag only on vCPU 0
                processors++;
                offset += 20;
                continue;
            }
            if (type == 2)
            {
                ioApics++;
                Assert.Equal(cpus, config[offset + 1]);
                Assert.Equal(MpTable.IoApicAddress, BinaryPrimitives.ReadUInt32LittleEndian(config[(offset + 4)..]));
            }
            if (type == 3) interrupts++;
            offset += 8;
        }
        Assert.Equal(cpus, processors);
        Assert.Equal(1, ioApics);
        Assert.Equal(24, interrupts);
        Assert.Equal(length, offset);
    }

    [Fact]
    public void Too_many_vcpus_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => MpTable.Build(0x9FC00, 255));
    }
}
