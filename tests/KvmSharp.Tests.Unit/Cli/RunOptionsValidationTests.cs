using KvmSharp.Cli;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Trackers;
using Xunit;

namespace KvmSharp.Tests.Unit.Cli;

/// <summary>RunOptions.Validate: checked values out, or an OptionsException naming the bad setting, its sources and its value.</summary>
public sealed class RunOptionsValidationTests : IDisposable
{
    private const ulong Host = 16UL << 30;
    private readonly string _directory = Directory.CreateTempSubdirectory("kvmsharp-unit-").FullName;
    private readonly string _image;

    public RunOptionsValidationTests()
    {
        _image = Path.Combine(_directory, "image.bin");
        File.WriteAllBytes(_image, [0xf4]);
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static ValidatedRunOptions Valid(RunOptions options) => options.Validate(Host);

    private static OptionsException Refused(RunOptions options, ulong? host = Host) => Assert.Throws<OptionsException>(() => options.Validate(host));

    private static void AssertNames(string setting, string value, OptionsException e)
    {
        Assert.StartsWith($"invalid setting {setting} (--{setting}, ", e.Message, StringComparison.Ordinal);
        Assert.Contains($"KVMSHARP__{setting.Replace("-", "").ToUpperInvariant()}", e.Message, StringComparison.Ordinal);
        Assert.Contains($"'{value}'", e.Message, StringComparison.Ordinal);
        Assert.Equal(setting, e.Setting!.Name);
    }

    [Fact]
    public void Defaults_are_valid()
    {
        var validated = Valid(new RunOptions());

        Assert.Equal(64UL << 20, validated.MemoryBytes);
        Assert.Equal(1, validated.Cpus);
        Assert.Equal(CpuMode.Long, validated.Mode);
        Assert.Null(validated.Image);
        Assert.Null(validated.Entry);
        Assert.Equal("stdout", validated.Serial);
        Assert.Equal("/dev/kvm", validated.KvmDevice);
        Assert.Equal(RunOptions.DefaultCmdline, validated.Cmdline);
        Assert.False(validated.Memfd);
        Assert.False(validated.Stats);
        Assert.Null(validated.Timeout);
        Assert.Empty(validated.Track);
    }

    [Theory]
    [InlineData("1M", 1UL << 20)]
    [InlineData("2G", 2UL << 30)]
    [InlineData("1024K", 1UL << 20)]
    [InlineData("3145728", 3UL << 20)]
    public void Memory_in_whole_MiB_is_accepted(string memory, ulong bytes)
    {
        Assert.Equal(bytes, new RunOptions { Memory = memory, Image = _image, Entry = "0x10000" }.Validate(Host).MemoryBytes);
    }

    [Theory]
    [InlineData("lots")]
    [InlineData("")]
    [InlineData("0")]
    [InlineData("512K")]
    [InlineData("1536K")]
    [InlineData("1048577")]
    [InlineData("99999999G")]
    [InlineData("2T")]
    public void Bad_memory_names_the_memory_setting(string memory)
    {
        var e = Refused(new RunOptions { Memory = memory, ForceMemory = "true" });

        AssertNames("memory", memory, e);
        Assert.Contains("KvmSharp:Memory", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Memory_above_the_hosts_is_refused_unless_forced()
    {
        var e = Refused(new RunOptions { Memory = "17G" });
        AssertNames("memory", "17G", e);
        Assert.Contains("this host has 16 GiB of RAM (MemTotal in /proc/meminfo); give less, or add --force-memory", e.Message);

        Assert.Equal(17UL << 30, Valid(new RunOptions { Memory = "17G", ForceMemory = "true" }).MemoryBytes);
        Assert.True(Valid(new RunOptions { Memory = "17G", ForceMemory = "true" }).ForceMemory);
        Assert.Equal(16UL << 30, Valid(new RunOptions { Memory = "16G" }).MemoryBytes);
    }

    [Fact]
    public void An_unknown_host_memory_does_not_refuse()
    {
        Assert.Equal(1UL << 40, new RunOptions { Memory = "1T" }.Validate(hostMemoryBytes: null).MemoryBytes);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-1")]
    [InlineData("256")]
    [InlineData("2147483648")]
    [InlineData("abc")]
    [InlineData("2.5")]
    [InlineData("")]
    [InlineData("0x2")]
    public void Bad_cpu_count_names_the_cpus_setting(string cpus)
    {
        var e = Refused(new RunOptions { Cpus = cpus });

        AssertNames("cpus", cpus, e);
        Assert.Contains("from 1 to 255", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Highest_cpu_count_is_accepted()
    {
        Assert.Equal(255, Valid(new RunOptions { Cpus = "255" }).Cpus);
    }

    [Theory]
    [InlineData("long", CpuMode.Long)]
    [InlineData("real", CpuMode.Real)]
    [InlineData("REAL", CpuMode.Real)]
    [InlineData("Long", CpuMode.Long)]
    public void Mode_is_case_insensitive(string mode, CpuMode expected)
    {
        Assert.Equal(expected, Valid(new RunOptions { Mode = mode }).Mode);
    }

    [Theory]
    [InlineData("protected")]
    [InlineData("")]
    [InlineData("64")]
    public void Bad_mode_names_the_mode_setting(string mode)
    {
        AssertNames("mode", mode, Refused(new RunOptions { Mode = mode }));
    }

    [Theory]
    [InlineData("abc")]
    [InlineData("0")]
    [InlineData("-1")]
    [InlineData("NaN")]
    [InlineData("Infinity")]
    [InlineData("1e3")]
    [InlineData("700000")]
    public void Bad_timeout_names_the_timeout_setting(string timeout)
    {
        AssertNames("timeout", timeout, Refused(new RunOptions { Timeout = timeout }));
    }

    [Fact]
    public void A_fractional_timeout_is_accepted()
    {
        Assert.Equal(TimeSpan.FromSeconds(1.5), Valid(new RunOptions { Timeout = "1.5" }).Timeout);
    }

    [Theory]
    [InlineData("maybe")]
    [InlineData("yes")]
    [InlineData("")]
    public void A_switch_takes_only_true_or_false(string value)
    {
        AssertNames("memfd", value, Refused(new RunOptions { Memfd = value }));
        AssertNames("stats", value, Refused(new RunOptions { Stats = value }));
        AssertNames("force-memory", value, Refused(new RunOptions { ForceMemory = value }));
    }

    [Theory]
    [InlineData("true", true)]
    [InlineData("True", true)]
    [InlineData("false", false)]
    public void A_switch_is_read_as_a_boolean(string value, bool expected)
    {
        var validated = Valid(new RunOptions { Memfd = value, Stats = value });
        Assert.Equal(expected, validated.Memfd);
        Assert.Equal(expected, validated.Stats);
    }

    [Fact]
    public void On_reboot_is_exit_or_restart()
    {
        Assert.True(Valid(new RunOptions { OnReboot = "restart" }).RestartOnReboot);
        AssertNames("on-reboot", "reset", Refused(new RunOptions { OnReboot = "reset" }));
        Assert.Contains("KvmSharp:OnReboot", Refused(new RunOptions { OnReboot = "reset" }).Message);
    }

    [Fact]
    public void An_empty_expect_or_kvm_device_is_refused()
    {
        AssertNames("expect", "", Refused(new RunOptions { Expect = "" }));
        AssertNames("kvm-device", "", Refused(new RunOptions { KvmDevice = "" }));
    }

    [Fact]
    public void Missing_image_file_names_the_image_setting_and_the_path()
    {
        string missing = _image + ".missing";

        var e = Refused(new RunOptions { Image = missing, Entry = "0x100000" });

        AssertNames("image", missing, e);
        Assert.Contains($"'{missing}': does not exist", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_directory_as_image_says_it_is_a_directory()
    {
        var e = Refused(new RunOptions { Image = _directory, Entry = "0x100000" });

        AssertNames("image", _directory, e);
        Assert.Contains($"'{_directory}': is a directory; give a file", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_empty_image_is_refused()
    {
        string empty = Path.Combine(_directory, "empty.bin");
        File.WriteAllBytes(empty, []);

        var e = Refused(new RunOptions { Image = empty, Entry = "0x100000" });
        AssertNames("image", empty, e);
        Assert.EndsWith($"'{empty}': is empty", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Image_without_entry_names_the_entry_setting()
    {
        var e = Refused(new RunOptions { Image = _image });

        AssertNames("entry", "(missing)", e);
        Assert.Contains("--image needs --entry", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Entry_without_image_names_the_entry_setting()
    {
        var e = Refused(new RunOptions { Entry = "0x100000" });

        AssertNames("entry", "0x100000", e);
        Assert.Contains("--image", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("start")]
    [InlineData("0x")]
    [InlineData("")]
    public void Unparsable_entry_names_the_entry_setting(string entry)
    {
        AssertNames("entry", entry, Refused(new RunOptions { Image = _image, Entry = entry }));
    }

    [Theory]
    [InlineData("0x100000", "long", 0x100000UL)]
    [InlineData("1048576", "long", 0x100000UL)]
    [InlineData("0x10000", "long", 0x10000UL)]
    [InlineData("0x7c00", "real", 0x7c00UL)]
    [InlineData("0xffff", "real", 0xffffUL)]
    public void Image_with_entry_is_accepted(string entry, string mode, ulong address)
    {
        var validated = Valid(new RunOptions { Image = _image, Entry = entry, Mode = mode, Memfd = "true", Serial = Path.Combine(_directory, "console.log") });

        Assert.Equal(_image, validated.Image);
        Assert.Equal(address, validated.Entry);
        Assert.True(validated.Memfd);
        Assert.False(File.Exists(validated.Serial), "validation creates nothing");
    }

    [Theory]
    [InlineData("0x8000", "long", "at or above 0x10000")]
    [InlineData("0xffff", "long", "at or above 0x10000")]
    [InlineData("0x10000", "real", "below 0x10000")]
    [InlineData("0x100000", "real", "below 0x10000")]
    [InlineData("0x4000000", "long", "is outside guest RAM (0x0-0x4000000, where a flat image loads)")]
    [InlineData("0xc0000000", "long", "is outside guest RAM")]
    public void An_entry_the_cpu_mode_or_ram_cannot_take_is_refused(string entry, string mode, string reason)
    {
        var e = Refused(new RunOptions { Image = _image, Entry = entry, Mode = mode });

        AssertNames("entry", entry, e);
        Assert.Contains(reason, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_image_larger_than_ram_or_running_past_it_is_refused()
    {
        string big = Path.Combine(_directory, "big.bin");
        using (var stream = File.Create(big)) stream.SetLength(3 << 20);

        var larger = Refused(new RunOptions { Image = big, Entry = "0x10000", Memory = "2M" });
        AssertNames("image", big, larger);
        Assert.Contains("is 3 MiB, larger than the 1.9 MiB between its load address 0x10000 and the end of the guest's 2 MiB of low memory; give more memory", larger.Message);

        var past = Refused(new RunOptions { Image = big, Entry = "0x200000", Memory = "4M" });
        AssertNames("image", big, past);
        Assert.Contains("is 3 MiB, larger than the 2 MiB between its load address 0x200000", past.Message);

        Assert.Equal(0x100000UL, Valid(new RunOptions { Image = big, Entry = "0x100000", Memory = "4M" }).Entry);
    }

    [Fact]
    public void The_built_in_guest_needs_its_minimum_memory()
    {
        AssertNames("memory", "1M", Refused(new RunOptions { Memory = "1M" }));
    }

    [Fact]
    public void Kernel_and_image_together_are_refused()
    {
        AssertNames("kernel", _image, Refused(new RunOptions { Kernel = _image, Image = _image }));
    }

    [Fact]
    public void Initrd_without_kernel_is_refused()
    {
        AssertNames("initrd", _image, Refused(new RunOptions { Initrd = _image }));
    }

    [Fact]
    public void A_kernel_the_loader_refuses_gives_its_reason()
    {
        var e = Refused(new RunOptions { Kernel = _image });

        AssertNames("kernel", _image, e);
        Assert.Contains("is not a bzImage", e.Message);
    }

    [Fact]
    public void A_kernel_larger_than_low_ram_is_refused_by_its_size()
    {
        string kernel = Path.Combine(_directory, "vmlinuz-huge");
        using (var stream = File.Create(kernel)) stream.SetLength(80L << 20);

        var e = Refused(new RunOptions { Kernel = kernel, Memory = "64M" });

        AssertNames("kernel", kernel, e);
        Assert.EndsWith($"'{kernel}': is 80 MiB, larger than the guest's 64 MiB of low memory; give more memory", e.Message, StringComparison.Ordinal);
    }

    // What the loader's single check refuses lands on the setting the user must change.
    [Theory]
    [InlineData("memory", "32M", null, 0, "32 MiB is too little to boot Linux; give at least 64M")]
    [InlineData("memory", "64M", null, 0x8000000, "kernel 'vmlinuz' needs memory up to 0x9000000 to decompress, above the 64 MiB of low memory given; give at least 144M of memory")]
    [InlineData("cmdline", "64M", null, 0, "3000 bytes is longer than this kernel accepts (2047 bytes, cmdline_size in its header); shorten it")]
    [InlineData("initrd", "64M", 48 << 20, 0, "the initrd (48 MiB) does not fit between the kernel (ends 0x2000000) and 0x4000000; give more memory")]
    public void Linux_placement_refusals_name_the_setting_to_change(string setting, string memory, int? initrdBytes, int initSize, string reason)
    {
        string kernel = Path.Combine(_directory, "vmlinuz");
        File.WriteAllBytes(kernel, Boot.SyntheticBzImage.Create(initSize: initSize == 0 ? 0x1000000u : (uint)initSize));
        string? initrd = null;
        if (initrdBytes is { } bytes)
        {
            initrd = Path.Combine(_directory, "initrd");
            File.WriteAllBytes(initrd, new byte[bytes]);
        }
        string? cmdline = setting == "cmdline" ? new string('x', 3000) : null;

        var e = Refused(new RunOptions { Kernel = kernel, Initrd = initrd, Memory = memory, Cmdline = cmdline });

        string value = setting switch { "memory" => memory, "initrd" => initrd!, _ => new string('x', 37) + "..." };
        AssertNames(setting, value, e);
        Assert.EndsWith($": {reason}", e.Message, StringComparison.Ordinal);
        Assert.Equal(kernel, Valid(new RunOptions { Kernel = kernel, Memory = "256M" }).Kernel);
    }

    [Theory]
    [InlineData("0x180000-0x188000")]
    [InlineData("0x3fff000")]
    [InlineData("0x0+0x1000,0x200000+4K")]
    public void Track_ranges_in_ram_are_accepted(string track)
    {
        Assert.NotEmpty(Valid(new RunOptions { Track = track }).Track);
    }

    [Theory]
    [InlineData("64M", "0x4000000+0x1000", "lies beyond guest memory")]
    [InlineData("64M", "0x3fff000-0x4001000", "lies beyond guest memory")]
    [InlineData("4G", "0xc0000000+0x1000", "lies in the PCI hole (0xc0000000-0x100000000), which is not RAM")]
    [InlineData("4G", "0xbffff000-0xc0001000", "lies in the PCI hole")]
    [InlineData("4G", "0xfffff000-0x100001000", "lies in the PCI hole")]
    [InlineData("4G", "0x140000000+0x1000", "lies beyond guest memory")]
    [InlineData("3G", "0xc0000000+0x1000", "lies beyond guest memory")]
    [InlineData("64M", "banana", "is not an address")]
    [InlineData("4G", "0x1000+17179869185G", "'17179869185G' is beyond the 64-bit address space")]
    public void Track_ranges_outside_ram_are_refused_naming_the_ram(string memory, string track, string reason)
    {
        var e = Refused(new RunOptions { Memory = memory, Track = track });

        AssertNames("track", track, e);
        Assert.Contains(reason, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Track_accepts_the_ram_remapped_above_4_GiB()
    {
        var validated = Valid(new RunOptions { Memory = "4G", Track = "0x100000000+0x1000,0xbffff000+0x1000" });

        Assert.Equal([new GuestRange(0x1_0000_0000, 0x1_0000_1000), new GuestRange(0xBFFF_F000, 0xC000_0000)], validated.Track);
        Assert.Contains("guest RAM is 0x0-0xc0000000 and 0x100000000-0x140000000", Refused(new RunOptions { Memory = "4G", Track = "0x140000000" }).Message);
    }

    [Fact]
    public void A_directory_as_serial_is_refused_and_a_new_file_is_not_created()
    {
        var e = Refused(new RunOptions { Serial = _directory });
        AssertNames("serial", _directory, e);
        Assert.Contains("is a directory", e.Message);

        string missingDirectory = Path.Combine(_directory, "nope", "console.log");
        Assert.Contains("does not exist", Refused(new RunOptions { Serial = missingDirectory }).Message);
    }

    [Fact]
    public void First_bad_setting_is_reported_in_a_fixed_order()
    {
        var e = Refused(new RunOptions { Memory = "lots", Cpus = "0", Mode = "x" });

        AssertNames("memory", "lots", e);
    }

    [Fact]
    public void The_origin_is_added_to_the_message()
    {
        var e = Refused(new RunOptions { Cpus = "abc" }).From("the environment, KVMSHARP__CPUS");

        Assert.Contains("'abc' (from the environment, KVMSHARP__CPUS): give", e.Message);
    }
}
