using System.Globalization;
using System.Text.RegularExpressions;
using Iced.Intel;
using KvmSharp.Devices.Debug;
using KvmSharp.Tests.Integration.Cli;
using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Multiboot;

/// <summary>
/// Multiboot kernels through the real `kvmsharp` binary on /dev/kvm: a test kernel that checks what it was
/// given (eax, the multiboot info, a module, fw_cfg), starts its APs with INIT/SIPI and reports through
/// QEMU's isa-debug-exit, so the process's exit status is (value &lt;&lt; 1) | 1.
/// </summary>
public sealed class MultibootBootTests
{
    private const int Cpus = 4;
    private const ulong Memory = 32UL << 20;

    [KvmFact]
    public void A_multiboot_kernel_sees_its_info_module_fw_cfg_and_APs_and_its_isa_debug_exit_value_becomes_the_status()
    {
        using var files = new TempFiles();
        var (kernel, moduleItem) = MultibootTestKernel.Write(files.Root, Memory, Cpus);

        var result = KvmSharpProcess.Run(["run", "--kernel", kernel, "--initrd", moduleItem, "--cmdline", MultibootTestKernel.Arguments,
            "--memory", $"{Memory >> 20}M", "--cpus", $"{Cpus}", "--debug-exit", "port=0xf4,width=4,qemu=on", "--timeout", "120"],
            timeout: TimeSpan.FromSeconds(150));

        uint expected = MultibootTestKernel.PassingValue(Cpus);
        var written = Regex.Match(result.StandardError, "guest wrote 0x([0-9a-f]+) to isa-debug-exit");
        Assert.True(written.Success, $"the kernel did not write to the debug-exit port: exit {result.ExitCode}\n{result.StandardError}");
        uint value = uint.Parse(written.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        var failed = (MultibootTestKernel.Failure)(value & 0x7F);
        Assert.True(value == expected, $"the kernel wrote 0x{value:x} (failed checks: {failed}; APs counted: {(value >> 8) & 0xFF}), expected 0x{expected:x}\n{result.StandardError}");
        // The whole dword reached the port, and the process status is QEMU's (value << 1) | 1.
        Assert.Equal((int)DebugExitPort.QemuStatus(expected), result.ExitCode);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains($"status (0x{expected:x} << 1) | 1 = 1", result.StandardError);
    }

    [KvmFact]
    public void A_kernel_with_load_addresses_in_its_header_boots_and_reports_through_the_default_debug_exit_port()
    {
        using var files = new TempFiles();
        const uint Load = 0x200000, HeaderSize = 32, BssBytes = 0x2000;
        var a = new Assembler(32);
        var bad = a.CreateLabel();
        var report = a.CreateLabel();
        a.cmp(eax, unchecked((int)0x2BADB002));
        a.jne(bad);
        a.cmp(__dword_ptr[Load + 0x1000], 0);          // in the zeroed bss after the loaded bytes
        a.jne(bad);
        a.mov(al, 7);
        a.jmp(report);
        a.Label(ref bad);
        a.mov(al, 9);
        a.Label(ref report);
        a.mov(dx, TestGuest.DebugExitPort);
        a.@out(dx, al);
        a.hlt();
        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), Load + HeaderSize);
        string kernel = files.Write("aout.bin", MultibootElf.BuildWithAddressFields(Load, Load + HeaderSize, stream.ToArray(), BssBytes));

        var result = KvmSharpProcess.Run(["run", "--kernel", kernel, "--memory", "16M", "--timeout", "60"], timeout: TimeSpan.FromSeconds(90));

        Assert.True(result.ExitCode == 7, $"exit {result.ExitCode}\n{result.StandardError}");
        Assert.Contains("guest exited with status 7", result.StandardError);
    }

    private static byte[] Code32(uint address)
    {
        var a = new Assembler(32);
        a.hlt();
        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), address);
        return stream.ToArray();
    }

    private static byte[] Kernel(uint address, uint memorySize = 0x1000, uint checksumError = 0) =>
        MultibootElf.Build(address, [new(address, Code32(address), memorySize)], checksumError: checksumError);

    [Fact]
    public void A_wrong_header_checksum_is_refused_with_exit_2_naming_the_checksum()
    {
        using var files = new TempFiles();
        string kernel = files.Write("bad-checksum.elf", Kernel(0x100000, checksumError: 1));
        string line = CliRun.Refused(2, ["run", "--kernel", kernel, "--memory", "16M"]);
        Assert.Contains("invalid setting kernel", line);
        Assert.Contains("checksum", line);
        Assert.Contains("must be 0", line);
    }

    [Fact]
    public void A_segment_beyond_guest_memory_is_refused_with_exit_2_asking_for_more_memory()
    {
        using var files = new TempFiles();
        string kernel = files.Write("high.elf", Kernel(0x2000000));
        string line = CliRun.Refused(2, ["run", "--kernel", kernel, "--memory", "16M"]);
        Assert.Contains("invalid setting memory", line);
        Assert.Contains("0x2000000-0x2001000", line);
        Assert.Contains("give at least 33M", line);
    }

    [Fact]
    public void A_segment_over_the_multiboot_info_is_refused_with_exit_2()
    {
        using var files = new TempFiles();
        string kernel = files.Write("low.elf", Kernel(0x10000));
        string line = CliRun.Refused(2, ["run", "--kernel", kernel, "--memory", "16M"]);
        Assert.Contains("invalid setting kernel", line);
        Assert.Contains("overlaps the multiboot info", line);
    }

    [Fact]
    public void A_truncated_kernel_is_refused_with_exit_2_naming_the_segment()
    {
        using var files = new TempFiles();
        var whole = Kernel(0x100000);
        string kernel = files.Write("cut.elf", whole[..0x1000]);
        string line = CliRun.Refused(2, ["run", "--kernel", kernel, "--memory", "16M"]);
        Assert.Contains("invalid setting kernel", line);
        Assert.Contains("lies beyond the file", line);
    }

    [Fact]
    public void A_missing_module_and_a_module_too_large_for_memory_are_refused_with_exit_2()
    {
        using var files = new TempFiles();
        string kernel = files.Write("kernel.elf", Kernel(0x100000));
        string missing = CliRun.Refused(2, ["run", "--kernel", kernel, "--initrd", Path.Combine(files.Root, "absent.bin") + " arg", "--memory", "16M"]);
        Assert.Contains("invalid setting initrd", missing);
        Assert.Contains("does not exist", missing);
        string large = files.Sparse("large.bin", 15L << 20);
        string tooLarge = CliRun.Refused(2, ["run", "--kernel", kernel, "--initrd", $"{large},{large}", "--memory", "16M"]);
        Assert.Contains("invalid setting initrd", tooLarge);
        Assert.Contains("module 1", tooLarge);
        Assert.Contains("does not fit", tooLarge);
    }

    [Theory]
    [InlineData("port=0x3f8", "overlap the serial port")]
    [InlineData("port=0xf4,width=3", "width=3 is not valid")]
    [InlineData("port=0xffff,width=4", "runs past port 0xffff")]
    [InlineData("qemu=yes", "qemu=yes is not valid")]
    [InlineData("colour=red", "unknown key 'colour'")]
    public void A_bad_debug_exit_value_is_refused_with_exit_2(string value, string reason)
    {
        string line = CliRun.Refused(2, ["run", "--debug-exit", value]);
        Assert.Contains("invalid setting debug-exit", line);
        Assert.Contains(reason, line);
    }

    [Fact]
    public void A_debug_exit_on_a_port_a_kernel_guests_device_takes_is_refused_with_exit_2()
    {
        using var files = new TempFiles();
        string kernel = files.Write("kernel.elf", Kernel(0x100000));
        string line = CliRun.Refused(2, ["run", "--kernel", kernel, "--memory", "16M", "--debug-exit", "port=0x510"]);
        Assert.Contains("overlap fw_cfg at 0x510-0x511", line);
    }
}
