using System.Buffers.Binary;
using System.Text;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Boot.Linux;
using KvmSharp.Vmm.Boot.Multiboot;
using Xunit;

namespace KvmSharp.Tests.Unit.Boot;

public sealed class MultibootKernelTests
{
    private static readonly MultibootBootConfig NoModules = new("kernel", [], "kernel args");

    [Fact]
    public void An_elf_kernel_loads_its_segments_at_their_physical_addresses_with_bss()
    {
        var kernel = MultibootKernel.Parse(SyntheticMultiboot.Elf(), "mb");

        Assert.Equal(SyntheticMultiboot.Entry, kernel.Entry);
        Assert.Equal(2, kernel.Segments.Count);
        Assert.Equal(SyntheticMultiboot.CodeAddress, kernel.Segments[0].PhysicalAddress);
        Assert.Equal(0x100, kernel.Segments[0].Bytes.Length);
        Assert.Equal(1, kernel.Segments[0].Bytes[0]);
        Assert.Equal(0x3000UL, kernel.Segments[1].MemorySize);
        Assert.Equal(SyntheticMultiboot.DataAddress + 0x3000UL, kernel.End);
    }

    [Fact]
    public void An_entry_linked_at_a_virtual_address_is_moved_to_the_segments_physical_address()
    {
        var kernel = MultibootKernel.Parse(SyntheticMultiboot.Elf(linkedAt: 0xC0100000), "higher-half");
        Assert.Equal(SyntheticMultiboot.Entry, kernel.Entry);
    }

    [Fact]
    public void The_a_out_kludge_fields_say_what_loads_where_and_the_bss_is_zeroed()
    {
        var kernel = MultibootKernel.Parse(SyntheticMultiboot.AddressFields(), "flat");

        var segment = Assert.Single(kernel.Segments);
        Assert.Equal(0x100000UL, segment.PhysicalAddress);
        Assert.Equal(0x400, segment.Bytes.Length);
        Assert.Equal(0x80, segment.Bytes[0]);
        Assert.Equal(0x4000UL, segment.MemorySize);
        Assert.Equal(0x100080u, kernel.Entry);
    }

    [Fact]
    public void A_wrong_checksum_names_the_offset_and_the_right_checksum()
    {
        var e = Assert.Throws<InvalidDataException>(() => MultibootKernel.Parse(SyntheticMultiboot.Elf(checksumError: 5), "bad"));
        Assert.Contains("at file offset 0x100", e.Message);
        Assert.Contains($"should be 0x{unchecked(0u - SyntheticMultiboot.Magic - 3):x8}", e.Message);
    }

    [Fact]
    public void Required_flags_KvmSharp_does_not_provide_are_refused()
    {
        var e = Assert.Throws<InvalidDataException>(() => MultibootKernel.Parse(SyntheticMultiboot.Elf(flags: 0x3 | 0x8), "needs-more"));
        Assert.Contains("bits 0x0008", e.Message);
        // Optional flags (bits 17-31) and the video flag (as QEMU) are accepted.
        MultibootKernel.Parse(SyntheticMultiboot.Elf(flags: 0x3 | 0x4 | 0x20000), "optional");
    }

    [Fact]
    public void Address_fields_that_point_outside_the_file_or_run_backwards_are_refused()
    {
        Assert.Contains("beyond the end of the file", Assert.Throws<InvalidDataException>(() => MultibootKernel.Parse(SyntheticMultiboot.AddressFields(loadEndAddress: 0x100800), "x")).Message);
        Assert.Contains("bss_end_addr", Assert.Throws<InvalidDataException>(() => MultibootKernel.Parse(SyntheticMultiboot.AddressFields(bssEndAddress: 0x100200), "x")).Message);
        Assert.Contains("entry_addr", Assert.Throws<InvalidDataException>(() => MultibootKernel.Parse(SyntheticMultiboot.AddressFields(entry: 0x200000), "x")).Message);
    }

    [Fact]
    public void A_pvh_vmlinux_and_a_bzimage_stay_linux_and_a_multiboot_elf_is_multiboot()
    {
        Assert.False(MultibootLoader.IsMultiboot(SyntheticElf.Create(), "vmlinux"));
        Assert.False(MultibootLoader.IsMultiboot(SyntheticBzImage.Create(), "bzImage"));
        Assert.True(MultibootLoader.IsMultiboot(SyntheticMultiboot.Elf(), "mb"));
        Assert.True(MultibootLoader.IsMultiboot(SyntheticMultiboot.AddressFields(), "flat"));

        // A PVH vmlinux that also carries a multiboot header stays PVH.
        var both = SyntheticElf.Create();
        BinaryPrimitives.WriteUInt32LittleEndian(both.AsSpan(0x380), SyntheticMultiboot.Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(both.AsSpan(0x384), 0);
        BinaryPrimitives.WriteUInt32LittleEndian(both.AsSpan(0x388), unchecked(0u - SyntheticMultiboot.Magic));
        Assert.False(MultibootLoader.IsMultiboot(both, "pvh-and-multiboot"));
        // Without the PVH note it boots through multiboot.
        var noNote = SyntheticElf.Create(withPvhNote: false);
        both.AsSpan(0x380, 12).CopyTo(noNote.AsSpan(0x380));
        Assert.True(MultibootLoader.IsMultiboot(noNote, "multiboot-only"));
    }

    [Fact]
    public void A_segment_over_the_multiboot_info_or_beyond_ram_is_refused_with_the_input_to_fix()
    {
        var low = SyntheticMultiboot.Elf();
        BinaryPrimitives.WriteUInt32LittleEndian(low.AsSpan(SyntheticMultiboot.SecondProgramHeader + 12), (uint)MultibootLayout.InfoAddress + 0x40);
        var overlap = Assert.Throws<GuestInputException>(() => MultibootLoader.Check(low, "low", NoModules, 64UL << 20, []));
        Assert.Equal(GuestInput.Kernel, overlap.Input);
        Assert.Contains("overlaps the multiboot info", overlap.Message);

        var beyond = Assert.Throws<GuestInputException>(() => MultibootLoader.Check(SyntheticMultiboot.Elf(), "mb", NoModules, 2UL << 20, []));
        Assert.Equal(GuestInput.Memory, beyond.Input);
        Assert.Contains("give at least 3M", beyond.Message);
    }

    [Fact]
    public void Modules_that_do_not_fit_after_the_kernel_are_refused_naming_the_module()
    {
        var config = NoModules with { Modules = [new("a.bin", "a.bin"), new("b.bin", "b.bin x")] };
        MultibootLoader.Check(SyntheticMultiboot.Elf(), "mb", config, 64UL << 20, [1000, 1000]);
        var e = Assert.Throws<GuestInputException>(() => MultibootLoader.Check(SyntheticMultiboot.Elf(), "mb", config, 64UL << 20, [1000, 62UL << 20]));
        Assert.Equal(GuestInput.Initrd, e.Input);
        Assert.Contains("module 2 ('b.bin'", e.Message);
    }

    [Fact]
    public void The_info_holds_memory_cmdline_mmap_modules_and_the_loader_name_where_its_pointers_say()
    {
        const ulong At = MultibootLayout.InfoAddress;
        var modules = new MultibootModule[] { new("m1", "m1 one"), new("m2", "m2") };
        var map = LinuxLoader.BuildE820([(0, 64UL << 20)]);
        var info = MultibootInfo.Build(At, "kernel a=b", modules, [(0x200000, 100), (0x201000, 5000)], 640, 64512, map);
        uint U32(int offset) => BinaryPrimitives.ReadUInt32LittleEndian(info.AsSpan(offset));
        string Str(uint address) { int o = (int)(address - At); return Encoding.UTF8.GetString(info, o, Array.IndexOf(info, (byte)0, o) - o); }

        Assert.Equal(0x24Du, U32(MultibootInfo.Flags));
        Assert.Equal(640u, U32(MultibootInfo.MemLower));
        Assert.Equal(64512u, U32(MultibootInfo.MemUpper));
        Assert.Equal("kernel a=b", Str(U32(MultibootInfo.CmdLine)));
        Assert.Equal("KvmSharp", Str(U32(MultibootInfo.BootLoaderNameAddr)));
        Assert.Equal(2u, U32(MultibootInfo.ModsCount));
        int mods = (int)(U32(MultibootInfo.ModsAddr) - At);
        Assert.Equal(0x201000u, U32(mods + 16));
        Assert.Equal(0x201000u + 5000, U32(mods + 20));
        Assert.Equal("m1 one", Str(U32(mods + 8)));
        Assert.Equal((uint)(map.Count * 24), U32(MultibootInfo.MmapLength));
        int mmap = (int)(U32(MultibootInfo.MmapAddr) - At);
        for (int i = 0; i < map.Count; i++)
        {
            Assert.Equal(20u, U32(mmap + i * 24));
            Assert.Equal(map[i].Address, BinaryPrimitives.ReadUInt64LittleEndian(info.AsSpan(mmap + i * 24 + 4)));
            Assert.Equal(map[i].Size, BinaryPrimitives.ReadUInt64LittleEndian(info.AsSpan(mmap + i * 24 + 12)));
            Assert.Equal((uint)map[i].Type, U32(mmap + i * 24 + 20));
        }
        Assert.Equal((ulong)info.Length, MultibootInfo.Size("kernel a=b", modules));
    }

    [Theory]
    [InlineData("a.bin", new[] { "a.bin" }, new[] { "a.bin" })]
    [InlineData("a.bin x=1,b.bin", new[] { "a.bin", "b.bin" }, new[] { "a.bin x=1", "b.bin" })]
    [InlineData("we,,ird.bin arg,,with,,commas", new[] { "we,ird.bin" }, new[] { "we,ird.bin arg,with,commas" })]
    public void Module_lists_follow_qemus_initrd_syntax(string text, string[] paths, string[] strings)
    {
        var modules = MultibootModule.ParseList(text);
        Assert.Equal(paths, modules.Select(m => m.Path));
        Assert.Equal(strings, modules.Select(m => m.String));
    }

    [Theory]
    [InlineData("")]
    [InlineData("a.bin,")]
    [InlineData("a.bin,,,")]
    public void An_empty_module_item_is_refused(string text) =>
        Assert.Contains("is empty", Assert.Throws<FormatException>(() => MultibootModule.ParseList(text)).Message);
}
