using KvmSharp.Cli;
using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;

namespace KvmSharp.Tests.Integration.Cli;

/// <summary>
/// Every bad input of issue 7, through the real `kvmsharp` binary: the documented exit status, one
/// line naming what was wrong and how to fix it, no stack trace. Refusals happen before any VM
/// exists, so none of these needs /dev/kvm.
/// </summary>
public sealed class BadInputTests : IDisposable
{
    private readonly TempFiles _files = new();

    public void Dispose() => _files.Dispose();

    private static string Refused(params string[] args) => CliRun.Refused(2, args);

    // A small valid flat image, so the case fails only on the setting under test.
    private string Image(int bytes = 16) => _files.Write("image.bin", Enumerable.Repeat((byte)0xF4, bytes).ToArray());

    [Theory]
    [InlineData("cpus", "--cpus", "abc")]
    [InlineData("cpus", "--cpus", "2.5")]
    [InlineData("timeout", "--timeout", "abc")]
    [InlineData("memfd", "--memfd=maybe", null)]
    [InlineData("stats", "--stats=perhaps", null)]
    [InlineData("memory", "--memory", "99999999G")]
    [InlineData("mode", "--mode", "protected")]
    public void A_bad_flag_value_is_named_with_its_sources_and_exits_2(string setting, string flag, string? value)
    {
        string line = Refused(value is null ? ["run", flag] : ["run", flag, value]);

        Assert.Contains($"invalid setting {setting} (--{setting}, KvmSharp:", line);
        Assert.Contains($"KVMSHARP__{setting.ToUpperInvariant()})", line);
        Assert.Contains($"(from --{setting})", line);
        Assert.Contains(": give ", line);
    }

    [Fact]
    public void A_bad_environment_value_names_the_variable_it_came_from()
    {
        string line = CliRun.Refused(2, ["run"], new Dictionary<string, string?> { ["KVMSHARP__CPUS"] = "abc" });

        Assert.Contains("invalid setting cpus", line);
        Assert.Contains("'abc' (from the environment, KVMSHARP__CPUS)", line);
    }

    [Fact]
    public void Caps_ignores_a_bad_run_setting_it_does_not_use()
    {
        // caps only needs the KVM device; the missing device proves it got that far (70, not 2).
        var result = CliRun.Run(["caps", "--kvm-device", "/nonexistent/kvm"], new Dictionary<string, string?> { ["KVMSHARP__CPUS"] = "abc", ["KVMSHARP__MEMORY"] = "" });

        Assert.True(result.ExitCode == 70, result.ToString());
        Assert.DoesNotContain("cpus", result.StandardError);
        Assert.Contains("/nonexistent/kvm does not exist", result.StandardError);
    }

    [KvmFact]
    public void Caps_runs_with_a_bad_run_setting_in_the_environment()
    {
        var result = CliRun.Run(["caps"], new Dictionary<string, string?> { ["KVMSHARP__CPUS"] = "abc" });

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("api version:       12", result.StandardOutput);
    }

    [Fact]
    public void Help_works_with_an_empty_setting_in_the_environment()
    {
        var result = CliRun.Run(["help"], new Dictionary<string, string?> { ["KVMSHARP__CPUS"] = "" });

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("Usage:", result.StandardOutput);
        Assert.Equal("", result.StandardError);
    }

    [Fact]
    public void An_empty_setting_in_the_environment_is_refused_by_run()
    {
        string line = CliRun.Refused(2, ["run"], new Dictionary<string, string?> { ["KVMSHARP__CPUS"] = "" });

        Assert.Contains("invalid setting cpus", line);
        Assert.Contains("'' (from the environment, KVMSHARP__CPUS)", line);
    }

    [Fact]
    public void A_wrong_type_in_appsettings_json_names_the_setting_and_the_file()
    {
        string settings = _files.WriteText("appsettings.json", """{ "KvmSharp": { "Cpus": "two" } }""");

        string line = CliRun.Refused(2, ["run"], workingDirectory: _files.Root);

        Assert.Contains("invalid setting cpus", line);
        Assert.Contains($"'two' (from {settings})", line);
    }

    [Fact]
    public void An_object_where_a_value_belongs_in_appsettings_json_is_refused()
    {
        string settings = _files.WriteText("appsettings.json", """{ "KvmSharp": { "Memory": { "Size": "64M" } } }""");

        string line = CliRun.Refused(2, ["run"], workingDirectory: _files.Root);

        Assert.Contains("invalid setting memory", line);
        Assert.Contains($"'an object or array' (from {settings}): give a single value", line);
    }

    [Fact]
    public void Broken_json_in_appsettings_json_names_the_file()
    {
        string settings = _files.WriteText("appsettings.json", """{ "KvmSharp": { "Cpus": 2, """);

        string line = CliRun.Refused(2, ["run"], workingDirectory: _files.Root);

        Assert.Contains($"invalid settings file {settings}", line);
        Assert.Contains("fix the JSON", line);
    }

    [Fact]
    public void An_entry_outside_ram_is_refused()
    {
        string line = Refused("run", "--memory", "16M", "--image", Image(), "--entry", "0x2000000");

        Assert.Contains("invalid setting entry", line);
        Assert.Contains("'0x2000000' (from --entry): is outside guest RAM (0x0-0x1000000, where a flat image loads)", line);
    }

    [Fact]
    public void An_image_larger_than_ram_is_refused()
    {
        string line = Refused("run", "--memory", "1M", "--image", _files.Sparse("big.bin", 2 << 20), "--entry", "0x10000");

        Assert.Contains("invalid setting image", line);
        Assert.Contains("is 2 MiB, larger than the 960 KiB between its load address 0x10000 and the end of the guest's 1 MiB of low memory", line);
    }

    [Fact]
    public void An_image_running_past_the_end_of_ram_is_refused()
    {
        string line = Refused("run", "--memory", "2M", "--image", _files.Sparse("big.bin", 1 << 20), "--entry", "0x180000");

        Assert.Contains("invalid setting image", line);
        Assert.Contains("is 1 MiB, larger than the 512 KiB between its load address 0x180000", line);
    }

    [Fact]
    public void A_long_mode_entry_below_0x10000_is_refused()
    {
        string line = Refused("run", "--image", Image(), "--entry", "0x8000");

        Assert.Contains("invalid setting entry", line);
        Assert.Contains("at or above 0x10000", line);
    }

    [Fact]
    public void A_real_mode_entry_at_or_above_0x10000_is_refused()
    {
        string line = Refused("run", "--image", Image(), "--entry", "0x10000", "--mode", "real");

        Assert.Contains("invalid setting entry", line);
        Assert.Contains("below 0x10000", line);
    }

    [Fact]
    public void A_kernel_larger_than_ram_is_refused_before_reading_it()
    {
        string line = Refused("run", "--memory", "64M", "--kernel", _files.Sparse("vmlinuz", 80L << 20));

        Assert.Contains("invalid setting kernel", line);
        Assert.Contains("is 80 MiB, larger than the guest's 64 MiB of low memory; give more memory", line);
    }

    [Fact]
    public void An_initrd_larger_than_ram_is_refused()
    {
        string line = Refused("run", "--memory", "64M", "--kernel", _files.BzImage(), "--initrd", _files.Sparse("initrd", 80L << 20));

        Assert.Contains("invalid setting initrd", line);
        Assert.Contains("is 80 MiB, larger than the guest's 64 MiB of low memory; give more memory", line);
    }

    [Fact]
    public void An_initrd_that_does_not_fit_beside_the_kernel_is_refused()
    {
        string line = Refused("run", "--memory", "64M", "--kernel", _files.BzImage(), "--initrd", _files.Sparse("initrd", 60L << 20));

        Assert.Contains("invalid setting initrd", line);
        Assert.Contains("does not fit between the kernel", line);
    }

    [Fact]
    public void A_100_KiB_cmdline_is_refused_with_the_kernels_limit()
    {
        string line = Refused("run", "--kernel", _files.BzImage(), "--cmdline", new string('x', 100 << 10));

        Assert.Contains("invalid setting cmdline", line);
        Assert.Contains("102400 bytes is longer than this kernel accepts (2047 bytes, cmdline_size in its header)", line);
        Assert.True(line.Length < 400, "the value is abbreviated in the message");
    }

    [Fact]
    public void Too_little_memory_for_linux_is_refused()
    {
        string line = Refused("run", "--memory", "32M", "--kernel", _files.BzImage());

        Assert.Contains("invalid setting memory", line);
        Assert.Contains("'32M' (from --memory): 32 MiB is too little to boot Linux; give at least 64M", line);
    }

    [Fact]
    public void Memory_above_the_hosts_is_refused_unless_forced()
    {
        ulong host = HostMemory.ReadTotal() ?? throw new InvalidOperationException("no MemTotal in /proc/meminfo");
        string tooMuch = $"{(host >> 30) + 2}G";

        string line = Refused("run", "--memory", tooMuch);
        Assert.Contains("invalid setting memory", line);
        Assert.Contains("(MemTotal in /proc/meminfo); give less, or add --force-memory", line);

        // Forced, the memory passes; the track range beyond it is what stops this run before a VM exists.
        string forced = Refused("run", "--memory", tooMuch, "--force-memory", "--track", "0x10000000000+0x1000");
        Assert.Contains("invalid setting track", forced);
    }

    [Fact]
    public void A_track_range_in_the_pci_hole_is_refused()
    {
        string line = Refused("run", "--memory", "4G", "--force-memory", "--track", "0xC0000000+0x1000");

        Assert.Contains("invalid setting track", line);
        Assert.Contains("lies in the PCI hole (0xc0000000-0x100000000), which is not RAM", line);
        Assert.Contains("guest RAM is 0x0-0xc0000000 and 0x100000000-0x140000000", line);
    }

    [Fact]
    public void A_directory_as_serial_file_is_refused()
    {
        string line = Refused("run", "--serial", _files.Root);

        Assert.Contains("invalid setting serial", line);
        Assert.Contains("is a directory", line);
    }

    [Fact]
    public void An_unwritable_serial_file_is_refused()
    {
        // Read-only even for root: sysfs refuses to open an attribute without a store method for writing.
        string line = Refused("run", "--serial", "/sys/devices/system/cpu/online");

        Assert.Contains("invalid setting serial", line);
        Assert.Contains("cannot be opened for writing: EACCES (errno 13, Permission denied)", line);
    }

    [Fact]
    public void A_serial_file_in_a_missing_directory_is_refused()
    {
        string line = Refused("run", "--serial", Path.Combine(_files.Root, "missing", "console.log"));

        Assert.Contains("invalid setting serial", line);
        Assert.Contains("does not exist", line);
    }

    [Theory]
    [InlineData("image", "/dev/zero", "is not a regular file (character device); give a file")]
    [InlineData("kernel", "/dev/zero", "is not a regular file (character device); give a file")]
    [InlineData("kernel", "/dev/urandom", "is not a regular file (character device); give a file")]
    [InlineData("initrd", "/dev/zero", "is not a regular file (character device); give a file")]
    [InlineData("kernel", "/tmp", "is a directory; give a file")]
    [InlineData("image", "/tmp", "is a directory; give a file")]
    [InlineData("kernel", "/nonexistent/vmlinuz", "does not exist")]
    [InlineData("initrd", "/nonexistent/initrd", "does not exist")]
    public void A_file_setting_must_name_a_regular_file_and_says_what_it_names_instead(string setting, string path, string what)
    {
        string line = Refused(setting switch
        {
            "image" => ["run", "--image", path, "--entry", "0x100000"],
            "initrd" => ["run", "--kernel", _files.BzImage(), "--initrd", path],
            _ => ["run", $"--{setting}", path],
        });

        Assert.Contains($"invalid setting {setting}", line);
        Assert.Contains($"'{path}' (from --{setting}): {what}", line);
    }

    [Fact]
    public void An_initrd_that_is_a_directory_is_refused()
    {
        string line = Refused("run", "--kernel", _files.BzImage(), "--initrd", _files.Root);

        Assert.Contains("invalid setting initrd", line);
        Assert.Contains("is a directory; give a file", line);
    }

    [Fact]
    public void A_kernel_the_parser_refuses_exits_2_with_its_reason()
    {
        string line = Refused("run", "--kernel", _files.Write("notakernel", new byte[8192]));

        Assert.Contains("invalid setting kernel", line);
        Assert.Contains("is not a bzImage", line);
    }

    [Theory]
    [InlineData("start")]
    [InlineData("--bogus")]
    public void An_unknown_command_or_option_exits_2_naming_it(string argument)
    {
        string line = Refused(argument);

        Assert.Contains($"'{argument}'", line);
        Assert.Contains("See 'kvmsharp --help'", line);
    }

    [Fact]
    public void A_flag_missing_its_value_exits_2_naming_it()
    {
        string line = Refused("run", "--memory");

        Assert.Contains("'--memory'", line);
    }

    [Fact]
    public void Caps_on_a_device_that_is_not_kvm_exits_70_with_the_errno_by_name()
    {
        string line = CliRun.Refused(70, ["caps", "--kvm-device", "/dev/null"]);

        Assert.Contains("KVM_GET_API_VERSION failed: ENOTTY (errno 25, Inappropriate ioctl for device): /dev/null is not a KVM device", line);
        Assert.DoesNotContain("version -25", line);
    }

    [Fact]
    public void Caps_on_a_directory_exits_70_and_says_it_is_a_directory()
    {
        string line = CliRun.Refused(70, ["caps", "--kvm-device", _files.Root]);

        Assert.Contains("open failed: EISDIR (errno 21, Is a directory)", line);
        Assert.Contains("is a directory, not the KVM device", line);
        Assert.DoesNotContain("(21)", line);
    }

    [Fact]
    public void Run_on_a_device_that_is_not_kvm_exits_70_with_one_line()
    {
        var result = CliRun.Run(["run", "--kvm-device", "/dev/null"]);

        Assert.True(result.ExitCode == 70, result.ToString());
        var line = Assert.Single(result.ErrorLines);
        Assert.Contains("ENOTTY (errno 25, Inappropriate ioctl for device): /dev/null is not a KVM device", line);
        Assert.DoesNotContain("   at ", result.StandardError);
    }
}
