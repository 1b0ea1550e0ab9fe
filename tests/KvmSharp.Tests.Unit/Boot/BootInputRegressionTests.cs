using System.Buffers.Binary;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Boot.Linux;
using KvmSharp.Vmm.Machine;
using Xunit;

namespace KvmSharp.Tests.Unit.Boot;

/// <summary>One test per bad kernel/initrd/image input reported in issue 7, and the checks that replaced them.</summary>
public sealed class BootInputRegressionTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("kvmsharp-boot-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private string WriteFile(string name, byte[] bytes)
    {
        string path = Path.Combine(_directory, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    // The refusal's message; success, another exception or a hang fails the test.
    private static string Refusal(Action parse) =>
        (BoundedParse.Run(parse, "the crafted input") ?? throw new InvalidOperationException("the crafted input was accepted")).Message;

    // The 132-byte ELF: header, one PT_NOTE program header, one note with namesz 0 and descsz 0xFFFFFFF4.
    // The old walk computed the note's end in 32-bit ints, got back to where it started, and spun forever.
    [Fact]
    public void An_elf_note_with_descsz_FFFFFFF4_is_refused_not_a_hang()
    {
        var file = new byte[132];
        "\u007fELF"u8.CopyTo(file);
        file[4] = 2; file[5] = 1; file[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(18), 62);
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(32), 64);
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(54), 56);
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(56), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(64), 4);          // PT_NOTE
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(64 + 8), 120);    // p_offset
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(64 + 32), 12);    // p_filesz
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(124), 0xFFFFFFF4); // descsz
        string path = WriteFile("note-hang.elf", file);

        string message = Refusal(() => LinuxLoader.Check(path));
        Assert.Contains("note-hang.elf", message);
        Assert.Contains("ELF program header 0: the note at file offset 0x78 (name size 0x0, descriptor size 0xfffffff4) runs past the end of its PT_NOTE segment (0xc bytes)", message);
    }

    [Theory]
    [InlineData("phoff", "the ELF program header table at offset 0xfffffffffffffff0 (2 x 56 bytes) lies beyond the file (0x400 bytes)")]
    [InlineData("offset", "ELF program header 0: segment offset 0xffffffffffffff00 + size 0x100 lies beyond the file (0x400 bytes)")]
    [InlineData("negative-size", "ELF program header 0: segment offset 0x200 + size 0x8000000000000000 lies beyond the file (0x400 bytes)")]
    [InlineData("note-size", "ELF program header 1: segment offset 0x300 + size 0xffffffffffffffff lies beyond the file (0x400 bytes)")]
    [InlineData("memsz", "ELF program header 0: memory size 0x10 is smaller than the file size 0x100")]
    [InlineData("wrap", "ELF program header 0: segment at 0xfffffffffffff000 of 0x3000 bytes lies outside 0x100000-0x100000000")]
    [InlineData("phentsize", "program headers of 8 bytes (e_phentsize); ELF64 needs at least 56")]
    [InlineData("entry", "the PVH entry point 0x9000000 is not inside the file bytes of any loadable segment")]
    public void Crafted_elf_offsets_and_sizes_are_refused_with_the_numbers(string defect, string expected)
    {
        var file = SyntheticElf.Create();
        var span = file.AsSpan();
        switch (defect)
        {
            case "phoff": BinaryPrimitives.WriteUInt64LittleEndian(span[32..], 0xFFFFFFFFFFFFFFF0); break;
            case "offset": BinaryPrimitives.WriteUInt64LittleEndian(span[(SyntheticElf.LoadHeader + 8)..], 0xFFFFFFFFFFFFFF00); break;
            case "negative-size": BinaryPrimitives.WriteUInt64LittleEndian(span[(SyntheticElf.LoadHeader + 32)..], 0x8000000000000000); break;
            case "note-size": BinaryPrimitives.WriteUInt64LittleEndian(span[(SyntheticElf.NoteHeader + 32)..], ulong.MaxValue); break;
            case "memsz": BinaryPrimitives.WriteUInt64LittleEndian(span[(SyntheticElf.LoadHeader + 40)..], 0x10); break;
            case "wrap": BinaryPrimitives.WriteUInt64LittleEndian(span[(SyntheticElf.LoadHeader + 24)..], 0xFFFFFFFFFFFFF000); break;
            case "phentsize": BinaryPrimitives.WriteUInt16LittleEndian(span[54..], 8); break;
            case "entry": BinaryPrimitives.WriteUInt64LittleEndian(span[(SyntheticElf.NoteBody + 16)..], 0x9000000); break;
        }
        string path = WriteFile("vmlinux", file);
        string message = Refusal(() => LinuxLoader.Check(path));
        Assert.Contains("'vmlinux'", message);
        Assert.Contains(expected, message);
    }

    [Theory]
    [InlineData("/dev/zero")]
    [InlineData("/dev/urandom")]
    public void A_character_device_as_kernel_is_refused_before_reading(string device)
    {
        var error = Assert.Throws<InvalidDataException>(() => LinuxLoader.Check(device));
        Assert.Equal($"kernel '{device}' is not a regular file (character device); give a file", error.Message);
        Assert.Contains("is not a regular file (character device)", Assert.Throws<InvalidDataException>(() => GuestImage.FromFile(device, 0x10000, CpuMode.Long)).Message);
        Assert.Contains("is not a regular file (character device)", Assert.Throws<InvalidDataException>(() => LinuxLoader.CheckInitrd(device, 64UL << 20)).Message);
    }

    [Fact]
    public void A_directory_a_fifo_a_missing_file_and_an_empty_file_are_named_as_such()
    {
        Assert.Equal($"kernel '{_directory}' is a directory; give a file", Assert.Throws<InvalidDataException>(() => LinuxLoader.Check(_directory)).Message);
        string fifo = Path.Combine(_directory, "fifo");
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", fifo)) mkfifo.WaitForExit();
        // A FIFO with no writer would block open(2); the check refuses it without opening it.
        Assert.Equal($"initrd '{fifo}' is not a regular file (FIFO); give a file", Assert.Throws<InvalidDataException>(() => LinuxLoader.CheckInitrd(fifo, 64UL << 20)).Message);
        string missing = Path.Combine(_directory, "missing");
        Assert.Equal($"kernel '{missing}' does not exist", Assert.Throws<FileNotFoundException>(() => LinuxLoader.Check(missing)).Message);
        Assert.Equal(@"kernel '/tmp\0x': the path contains a NUL character", Assert.Throws<InvalidDataException>(() => LinuxLoader.Check("/tmp\0x")).Message);
        string empty = WriteFile("empty", []);
        Assert.Equal($"guest image '{empty}' is empty", Assert.Throws<InvalidDataException>(() => GuestImage.Check(empty, 64UL << 20, 0x10000, CpuMode.Long)).Message);
    }

    [Fact]
    public void Files_larger_than_their_limit_are_refused_by_size_before_reading()
    {
        string huge = Path.Combine(_directory, "huge");
        using (var stream = File.Create(huge)) stream.SetLength(5L << 30);     // sparse: nothing is written
        Assert.Equal($"kernel '{huge}' is 5 GiB, larger than the 1 GiB limit for a kernel", Assert.Throws<InvalidDataException>(() => LinuxLoader.Check(huge)).Message);
        Assert.Equal($"initrd '{huge}' is 5 GiB, larger than the guest's 256 MiB of low memory; give more memory", Assert.Throws<InvalidDataException>(() => LinuxLoader.CheckInitrd(huge, 256UL << 20)).Message);
        Assert.Equal($"initrd '{huge}' is 5 GiB, larger than the guest's 3 GiB of low memory", Assert.Throws<InvalidDataException>(() => LinuxLoader.CheckInitrd(huge, 8UL << 30)).Message);
        // Bounded by low RAM with a memory size, by the kernel limit without one.
        Assert.Equal($"kernel '{huge}' is 5 GiB, larger than the guest's 256 MiB of low memory; give more memory",
            Assert.Throws<InvalidDataException>(() => LinuxLoader.Check(new LinuxBootConfig(huge, null, ""), 256UL << 20)).Message);
        Assert.Contains("is 5 GiB, larger than the", Assert.Throws<InvalidDataException>(() => GuestImage.FromFile(huge, 0x10000, CpuMode.Long)).Message);

        string image = WriteFile("image.bin", new byte[3 << 20]);
        Assert.Equal(3L << 20, GuestImage.Check(image, 64UL << 20, 0x200000, CpuMode.Long));
        Assert.Equal($"guest image '{image}' is 3 MiB, larger than the 2 MiB between its load address 0x200000 and the end of the guest's 4 MiB of low memory; give more memory or a lower load address",
            Assert.Throws<InvalidDataException>(() => GuestImage.Check(image, 4UL << 20, 0x200000, CpuMode.Long)).Message);
        var outside = Assert.Throws<GuestInputException>(() => GuestImage.Check(image, 4UL << 20, 0x400000, CpuMode.Long));
        Assert.Equal(GuestInput.Entry, outside.Input);
        Assert.Equal("entry 0x400000 is outside guest RAM (0x0-0x400000, where a flat image loads); give a lower address or more memory", outside.Message);
    }

    [Fact]
    public void A_truncated_bzimage_is_refused_with_syssize_and_the_file_size()
    {
        var valid = SyntheticBzImage.Create(setupSectors: 4, kernelBytes: 4096);
        LinuxLoader.Check(WriteFile("vmlinuz-ok", valid));
        var truncated = valid[..^16];
        string message = Refusal(() => LinuxLoader.Check(WriteFile("vmlinuz-cut", truncated)));
        Assert.Equal("'vmlinuz-cut' is truncated: the header declares 0xa00 setup bytes + 0x1000 kernel bytes (syssize 0x100), but the file is 0x19f0 bytes", message);
    }

    [Theory]
    [InlineData("syssize0", "declares an empty protected-mode kernel (syssize 0)")]
    [InlineData("initsize", "declares init_size 0x100, smaller than its own 0x1000-byte kernel")]
    [InlineData("pref", "declares pref_address 0xfffffffffffff000 + init_size 0x100000, beyond the address space")]
    [InlineData("header", "has a setup header ending at 0x210 (jump byte at 0x201 is 0xe)")]
    [InlineData("setup", "is truncated: 255 setup sectors (0x20000 bytes) and no kernel after them in a file of 0x1a00 bytes")]
    public void Every_bzimage_field_the_loader_relies_on_is_checked(string defect, string expected)
    {
        var file = SyntheticBzImage.Create(kernelBytes: 4096);
        switch (defect)
        {
            case "syssize0": BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x1F4), 0); break;
            case "initsize": BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x260), 0x100); break;
            case "pref": BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(0x258), 0xFFFFFFFFFFFFF000); break;
            case "header": file[0x201] = 0x0E; break;
            case "setup": file[0x1F1] = 255; break;
        }
        Assert.Contains(expected, Refusal(() => BzImage.Parse(file, "vmlinuz")));
    }

    [Fact]
    public void The_whole_boot_is_checked_against_memory_before_the_vm_exists()
    {
        string kernel = WriteFile("vmlinuz", SyntheticBzImage.Create(initSize: 0x1000000));
        string initrd = WriteFile("initrd", new byte[1 << 20]);
        LinuxLoader.Check(new LinuxBootConfig(kernel, initrd, "console=ttyS0"), 64UL << 20);

        AssertRefused(GuestInput.Memory, "memory: 32 MiB is too little to boot Linux; give at least 64M",
            () => LinuxLoader.Check(new LinuxBootConfig(kernel, null, ""), 32UL << 20));
        AssertRefused(GuestInput.CommandLine, "cmdline: 102400 bytes is longer than this kernel accepts (2047 bytes, cmdline_size in its header); shorten it",
            () => LinuxLoader.Check(new LinuxBootConfig(kernel, null, new string('a', 100 << 10)), 64UL << 20));
        string bigKernel = WriteFile("vmlinuz-big", SyntheticBzImage.Create(initSize: 0x8000000));
        AssertRefused(GuestInput.Memory, "memory: kernel 'vmlinuz-big' needs memory up to 0x9000000 to decompress, above the 64 MiB of low memory given; give at least 144M of memory",
            () => LinuxLoader.Check(new LinuxBootConfig(bigKernel, null, ""), 64UL << 20));
        string bigInitrd = WriteFile("initrd-big", new byte[48 << 20]);
        AssertRefused(GuestInput.Initrd, "memory: the initrd (48 MiB) does not fit between the kernel (ends 0x2000000) and 0x4000000; give more memory",
            () => LinuxLoader.Check(new LinuxBootConfig(kernel, bigInitrd, ""), 64UL << 20));
        string vmlinux = WriteFile("vmlinux", SyntheticElf.Create());
        AssertRefused(GuestInput.CommandLine, "cmdline: 2048 bytes is longer than this kernel accepts (2047 bytes, x86 Linux's limit); shorten it",
            () => LinuxLoader.Check(new LinuxBootConfig(vmlinux, null, new string('a', 2048)), 64UL << 20));
        string generous = WriteFile("vmlinuz-generous", SyntheticBzImage.Create(initSize: 0x1000000));
        var header = File.ReadAllBytes(generous);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(0x238), 0x100000);
        File.WriteAllBytes(generous, header);
        AssertRefused(GuestInput.CommandLine, "cmdline: 600000 bytes is longer than this kernel accepts (523263 bytes, the space KvmSharp keeps for it); shorten it",
            () => LinuxLoader.Check(new LinuxBootConfig(generous, null, new string('a', 600000)), 64UL << 20));
    }

    private static void AssertRefused(GuestInput input, string message, Action check)
    {
        var refusal = Assert.Throws<GuestInputException>(check);
        Assert.Equal(input, refusal.Input);
        Assert.Equal(message, refusal.Message);
        Assert.EndsWith(refusal.Reason, refusal.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0x8000UL, CpuMode.Long, "entry 0x8000: a long-mode image loads at or above 0x10000 (the page tables and stacks live below), not at 0x8000; give e.g. 0x100000")]
    [InlineData(0x10000UL, CpuMode.Real, "entry 0x10000: real mode starts at CS:IP = 0:entry, so the entry must be below 0x10000; give e.g. 0x7c00, or use long mode")]
    [InlineData(0xC0000000UL, CpuMode.Long, "entry 0xc0000000 is outside guest RAM (0x0-0x4000000, where a flat image loads); give a lower address or more memory")]
    public void Image_entry_rules_are_checked_for_the_file_and_for_the_vm_config(ulong entry, CpuMode mode, string message)
    {
        string image = WriteFile("image.bin", [0xF4]);
        AssertRefused(GuestInput.Entry, message, () => GuestImage.Check(image, 64UL << 20, entry, mode));
        var config = new VmConfig { MemoryBytes = 64UL << 20, Image = new GuestImage([0xF4], entry, entry, mode, "image"), SerialSink = new KvmSharp.Devices.Serial.CapturingSerialSink() };
        AssertRefused(GuestInput.Entry, message, config.Validate);

        Assert.Equal(1, GuestImage.Check(image, 64UL << 20, mode == CpuMode.Long ? 0x10000UL : 0xFFFFUL, mode));
        (config with { Image = new GuestImage([0xF4], 0x7C00, 0x7C00, CpuMode.Real, "boot sector") }).Validate();
    }

    [Fact]
    public void The_vm_config_refuses_bad_memory_cpus_and_an_image_beyond_ram()
    {
        var config = new VmConfig { MemoryBytes = 4UL << 20, Image = new GuestImage(new byte[3 << 20], 0x200000, 0x200000, CpuMode.Long, "big"), SerialSink = new KvmSharp.Devices.Serial.CapturingSerialSink() };
        AssertRefused(GuestInput.Image, "guest image 'big': 3145728 bytes at 0x200000 end beyond the guest's 4 MiB of low memory", config.Validate);
        AssertRefused(GuestInput.Memory, "memory: 1536 bytes is invalid; give a whole number of MiB, at least 1 MiB", (config with { MemoryBytes = 1536 }).Validate);
        AssertRefused(GuestInput.Cpus, "cpus: 256 is invalid; give 1 to 255", (config with { Cpus = 256 }).Validate);
        (config with { MemoryBytes = 8UL << 20 }).Validate();
    }
}
