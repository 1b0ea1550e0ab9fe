using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Guests;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Cli;

/// <summary>The `kvmsharp` executable end to end, on the real /dev/kvm.</summary>
public sealed class RunCommandTests
{
    [KvmFact]
    public void Run_with_no_arguments_boots_the_built_in_guest_which_reports_and_exits_0()
    {
        var result = KvmSharpProcess.Run(["run"]);

        Assert.True(result.ExitCode == 0, $"exit {result.ExitCode}\n{result.StandardOutput}\n{result.StandardError}");
        Assert.Contains(BuiltInGuest.Banner, result.StandardOutput);
        Assert.Contains("memory: 64 MiB", result.StandardOutput);
        Assert.Contains("cpu mode: 64-bit long mode (EFER.LMA=1)", result.StandardOutput);
        Assert.Contains($"checksum 0x{BuiltInGuest.ExpectedChecksum():x16}", result.StandardOutput);
        // Logs never mix into the serial console on stdout.
        Assert.DoesNotContain("info:", result.StandardOutput);
        Assert.Contains("guest exited with status 0", result.StandardError);
    }

    [KvmFact]
    public void Memory_and_cpus_come_from_flags_and_from_KVMSHARP_environment_variables()
    {
        var fromFlags = KvmSharpProcess.Run(["run", "--memory", "32M", "--cpus", "2"]);
        Assert.Equal(0, fromFlags.ExitCode);
        Assert.Contains("memory: 32 MiB", fromFlags.StandardOutput);

        var fromEnvironment = KvmSharpProcess.Run(["run"], new Dictionary<string, string> { ["KVMSHARP__MEMORY"] = "16M" });
        Assert.Equal(0, fromEnvironment.ExitCode);
        Assert.Contains("memory: 16 MiB", fromEnvironment.StandardOutput);

        // Flags win over the environment.
        var both = KvmSharpProcess.Run(["run", "--memory=8M"], new Dictionary<string, string> { ["KVMSHARP__MEMORY"] = "16M" });
        Assert.Contains("memory: 8 MiB", both.StandardOutput);
    }

    [Fact]
    public void An_invalid_setting_is_named_and_exits_2_before_touching_kvm()
    {
        var result = KvmSharpProcess.Run(["run", "--memory", "12X"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("invalid setting memory", result.StandardError);
        Assert.Contains("'12X'", result.StandardError);

        var cpus = KvmSharpProcess.Run(["run"], new Dictionary<string, string> { ["KVMSHARP__CPUS"] = "0" });
        Assert.Equal(2, cpus.ExitCode);
        Assert.Contains("invalid setting cpus", cpus.StandardError);

        var unknown = KvmSharpProcess.Run(["run", "--bogus"]);
        Assert.Equal(2, unknown.ExitCode);
        Assert.Contains("Unrecognized command or argument '--bogus'", unknown.StandardError);
    }

    [Fact]
    public void A_missing_kvm_device_is_explained()
    {
        var result = KvmSharpProcess.Run(["run", "--kvm-device", "/nonexistent/kvm"]);
        Assert.Equal(70, result.ExitCode);
        Assert.Contains("does not exist: load the KVM module", result.StandardError);
        Assert.Contains("--device /dev/kvm", result.StandardError);
    }

    [KvmFact]
    public void A_flat_image_boots_and_its_status_becomes_the_exit_code()
    {
        using var image = new FlatImageFile("image", assembler =>
        {
            assembler.mov(dx, 0x3F8);
            assembler.mov(al, (byte)'K');
            assembler.@out(dx, al);
            TestGuest.ExitWith(assembler, 42);
        });

        var result = KvmSharpProcess.Run(["run", "--image", image.Path, "--entry", image.Entry]);
        Assert.Equal(42, result.ExitCode);
        Assert.Equal("K", result.StandardOutput);
    }

    [KvmFact]
    public void A_guest_triple_fault_exits_71_with_a_report()
    {
        using var image = new FlatImageFile("fault", assembler => assembler.ud2());

        var result = KvmSharpProcess.Run(["run", "--image", image.Path, "--entry", image.Entry]);
        Assert.Equal(71, result.ExitCode);
        Assert.Contains("KVM_EXIT_SHUTDOWN", result.StandardError);
        Assert.Contains("ud2", result.StandardError);
        Assert.DoesNotContain("vCPU 0: vCPU 0:", result.StandardError);
        Assert.Contains("VM ended: vCPU 0: KVM_EXIT_SHUTDOWN", result.StandardError);
    }

    [KvmFact]
    public void Caps_prints_the_host_facts()
    {
        var result = KvmSharpProcess.Run(["caps"]);
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("api version:       12", result.StandardOutput);
        Assert.Contains("KVM_CAP_NR_MEMSLOTS", result.StandardOutput);
        Assert.Matches(@"smm:\s+(yes|no)", result.StandardOutput);
        Assert.Matches(@"guest kernel mode: (EMULATED|hardware)", result.StandardOutput);
        if (KvmAvailability.Facts!.EmulatesGuestKernelMode) Assert.Contains("warning: this KVM (kvm_pvm) emulates", result.StandardOutput);
    }

    [KvmFact]
    public void Track_audits_the_built_in_guests_pattern_writes_and_summarises_them_at_exit()
    {
        var result = KvmSharpProcess.Run(["run", "--track", "0x180000-0x188000"]);

        Assert.True(result.ExitCode == 0, result.StandardError);
        Assert.Contains($"checksum 0x{BuiltInGuest.ExpectedChecksum():x16}", result.StandardOutput);
        // The first write of the pattern is the LCG seed, logged with gpa, size, value and vCPU.
        Assert.Contains("tracked write: gpa 0x180000 size 8 value 0x9e3779b97f4a7c15 vcpu 0", result.StandardError);
        Assert.Contains($"write audit of 0x180000-0x188000: {BuiltInGuest.PatternQwords} writes, {BuiltInGuest.PatternBytes} bytes", result.StandardError);
        Assert.Contains("by page: 0x180000: 512,", result.StandardError);
    }

    [Fact]
    public void A_track_range_outside_guest_memory_is_refused_by_name()
    {
        var result = KvmSharpProcess.Run(["run", "--memory", "16M", "--track", "0x2000000-0x2001000"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("invalid setting track", result.StandardError);
        Assert.Contains("beyond guest memory", result.StandardError);
    }

    [KvmFact]
    public void Expect_exits_0_once_the_console_shows_the_text()
    {
        var result = KvmSharpProcess.Run(["run", "--expect", "cpu mode: 64-bit", "--timeout", "30"]);
        Assert.True(result.ExitCode == 0, result.StandardError);
        Assert.Contains("the console showed 'cpu mode: 64-bit'", result.StandardError);
    }

    [KvmFact]
    public void Expect_fails_with_the_console_tail_when_the_guest_ends_first()
    {
        var result = KvmSharpProcess.Run(["run", "--expect", "this text never appears"]);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("before the console showed 'this text never appears'", result.StandardError);
        Assert.Contains("self-test done", result.StandardError); // the tail
    }

    [KvmFact]
    public void Timeout_ends_a_guest_that_never_finishes_with_124_and_the_console_tail()
    {
        using var image = new FlatImageFile("spin", assembler =>
        {
            var spin = assembler.CreateLabel();
            assembler.mov(dx, 0x3F8);
            assembler.mov(al, (byte)'S');
            assembler.@out(dx, al);
            assembler.Label(ref spin);
            assembler.pause();
            assembler.jmp(spin);
        });

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var result = KvmSharpProcess.Run(["run", "--image", image.Path, "--entry", image.Entry, "--expect", "never", "--timeout", "1.5"]);
        Assert.Equal(124, result.ExitCode);
        Assert.Contains("timed out after 1.5 s waiting for 'never'", result.StandardError);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20));
    }

    [Fact]
    public void A_file_that_is_not_a_bzImage_is_refused_with_the_reason()
    {
        string path = Path.Combine(Path.GetTempPath(), $"kvmsharp-notkernel-{Environment.ProcessId}.bin");
        File.WriteAllBytes(path, new byte[8192]);
        try
        {
            var result = KvmSharpProcess.Run(["run", "--kernel", path]);
            Assert.Equal(2, result.ExitCode);
            Assert.Contains("is not a bzImage: no 'HdrS' setup-header magic", result.StandardError);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
