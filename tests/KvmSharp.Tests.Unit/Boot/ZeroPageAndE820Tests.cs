using System.Buffers.Binary;
using KvmSharp.Vmm.Boot.Linux;
using Xunit;

namespace KvmSharp.Tests.Unit.Boot;

public sealed class ZeroPageAndE820Tests
{
    [Fact]
    public void The_e820_map_reserves_the_ebda_and_starts_high_ram_at_1_MiB()
    {
        var map = LinuxLoader.BuildE820([(0, 256UL << 20)]);
        Assert.Equal(
            [new E820Entry(0, 0x9FC00, E820Type.Ram), new E820Entry(0x9FC00, 0x400, E820Type.Reserved), new E820Entry(0x100000, (256UL << 20) - 0x100000, E820Type.Ram)],
            map);
        var split = LinuxLoader.BuildE820([(0, 3UL << 30), (4UL << 30, 1UL << 30)]);
        Assert.Equal(new E820Entry(4UL << 30, 1UL << 30, E820Type.Ram), split[^1]);
    }

    [Fact]
    public void The_zero_page_carries_the_setup_header_and_the_loader_fields()
    {
        var kernel = BzImage.Parse(SyntheticBzImage.Create(), "test");
        var e820 = LinuxLoader.BuildE820([(0, 128UL << 20)]);
        var page = ZeroPage.Build(kernel, 0x100000, 0x20000, 0x7F00000, 0x123456, e820);

        Assert.Equal(4096, page.Length);
        Assert.Equal(0x53726448u, BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(0x202)));  // header copied
        Assert.Equal(0xFF, page[0x210]);                                                        // type_of_loader
        Assert.Equal(0x81, page[0x211] & 0x81);                                                 // LOADED_HIGH | CAN_USE_HEAP
        Assert.Equal(0x20000u, BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(0x228)));    // cmd_line_ptr
        Assert.Equal(0x7F00000u, BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(0x218)));  // ramdisk_image
        Assert.Equal(0x123456u, BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(0x21C)));   // ramdisk_size
        Assert.Equal(e820.Count, page[0x1E8]);
        for (int i = 0; i < e820.Count; i++)
        {
            var entry = page.AsSpan(0x2D0 + i * 20);
            Assert.Equal(e820[i].Address, BinaryPrimitives.ReadUInt64LittleEndian(entry));
            Assert.Equal(e820[i].Size, BinaryPrimitives.ReadUInt64LittleEndian(entry[8..]));
            Assert.Equal((uint)e820[i].Type, BinaryPrimitives.ReadUInt32LittleEndian(entry[16..]));
        }
    }
}
