using System.Buffers.Binary;
using KvmSharp.Vmm.Boot.Linux;
using Xunit;

namespace KvmSharp.Tests.Unit.Boot;

public sealed class PvhKernelTests
{
    private static byte[] Elf(bool withPvhNote = true, ushort machine = 62) => SyntheticElf.Create(withPvhNote, machine);

    [Fact]
    public void Reads_the_pvh_entry_and_the_loadable_segments()
    {
        var kernel = PvhKernel.Parse(Elf(), "vmlinux");
        Assert.Equal(0x1000080u, kernel.Entry);
        var segment = Assert.Single(kernel.Segments);
        Assert.Equal(0x1000000UL, segment.PhysicalAddress);
        Assert.Equal(0x100, segment.Bytes.Length);
        Assert.Equal(0x3000UL, segment.MemorySize);
        Assert.Equal(0x1003000UL, kernel.End);
    }

    [Fact]
    public void A_vmlinux_without_the_pvh_note_or_for_another_machine_is_refused()
    {
        Assert.Contains("no PVH entry point", Assert.Throws<InvalidDataException>(() => PvhKernel.Parse(Elf(withPvhNote: false), "vmlinux")).Message);
        Assert.Contains("not an x86-64", Assert.Throws<InvalidDataException>(() => PvhKernel.Parse(Elf(machine: 183), "vmlinux")).Message);
    }

    [Fact]
    public void The_start_info_points_at_its_module_list_and_memory_map()
    {
        var map = LinuxLoader.BuildE820([(0, 256UL << 20)]);
        var blob = HvmStartInfo.Build(0x6000, 0x20000, 0xE0000, 0x8000000, 0x1234, map);
        var info = blob.AsSpan();
        Assert.Equal(HvmStartInfo.Magic, BinaryPrimitives.ReadUInt32LittleEndian(info));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(info[4..]));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(info[12..]));
        Assert.Equal(0x6000UL + 56, BinaryPrimitives.ReadUInt64LittleEndian(info[16..]));
        Assert.Equal(0x20000UL, BinaryPrimitives.ReadUInt64LittleEndian(info[24..]));
        Assert.Equal(0xE0000UL, BinaryPrimitives.ReadUInt64LittleEndian(info[32..]));
        Assert.Equal(0x6000UL + 56 + 32, BinaryPrimitives.ReadUInt64LittleEndian(info[40..]));
        Assert.Equal((uint)map.Count, BinaryPrimitives.ReadUInt32LittleEndian(info[48..]));
        Assert.Equal(0x8000000UL, BinaryPrimitives.ReadUInt64LittleEndian(info[56..]));
        Assert.Equal(0x1234UL, BinaryPrimitives.ReadUInt64LittleEndian(info[64..]));
        var last = info[(56 + 32 + (map.Count - 1) * 24)..];
        Assert.Equal(map[^1].Address, BinaryPrimitives.ReadUInt64LittleEndian(last));
        Assert.Equal((uint)E820Type.Ram, BinaryPrimitives.ReadUInt32LittleEndian(last[16..]));
    }
}
