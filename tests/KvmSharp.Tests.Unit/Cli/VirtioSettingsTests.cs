using KvmSharp.Cli;
using KvmSharp.Tests.Unit.Boot;
using Xunit;

namespace KvmSharp.Tests.Unit.Cli;

/// <summary>--drive (repeatable), --no-rng and --console: parsed from every layer, checked before the VM exists.</summary>
public sealed class VirtioSettingsTests : IDisposable
{
    private const ulong Host = 16UL << 30;
    private readonly string _directory = Directory.CreateTempSubdirectory("kvmsharp-virtio-cli-").FullName;
    private readonly string _kernel, _diskA, _diskB;

    public VirtioSettingsTests()
    {
        _kernel = Path.Combine(_directory, "bzImage");
        File.WriteAllBytes(_kernel, SyntheticBzImage.Create());
        _diskA = Path.Combine(_directory, "a.img");
        _diskB = Path.Combine(_directory, "b.img");
        File.WriteAllBytes(_diskA, new byte[1 << 20]);
        File.WriteAllBytes(_diskB, new byte[1 << 20]);
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static RunOptions Bind(params string[] args)
    {
        var line = new CommandLine().Parse(args);
        Assert.Equal(ParsedVerb.Run, line.Verb);
        return Settings.Load(line.Settings, files: []).BindRunOptions();
    }

    [Fact]
    public void Repeated_drives_keep_their_order_and_options()
    {
        var options = Bind("run", "--kernel", _kernel, "--drive", $"file={_diskA},serial=root", "--drive", $"file={_diskB},readonly=on,id=data").Validate(Host);
        Assert.Equal([_diskA, _diskB], options.Drives.Select(d => d.Path));
        Assert.Equal("root", options.Drives[0].Serial);
        Assert.True(options.Drives[1].ReadOnly);
        Assert.Equal("data", options.Drives[1].Id);
        Assert.True(options.Rng);
        Assert.False(options.VirtioConsole);
    }

    [Fact]
    public void Rng_is_on_for_linux_by_default_off_with_no_rng_and_never_for_flat_images()
    {
        Assert.True(Bind("run", "--kernel", _kernel).Validate(Host).Rng);
        Assert.False(Bind("run", "--kernel", _kernel, "--no-rng").Validate(Host).Rng);
        Assert.False(Bind("run").Validate(Host).Rng);
        var bad = Assert.Throws<OptionsException>(() => Bind("run", "--kernel", _kernel, "--no-rng=maybe").Validate(Host));
        Assert.Equal("no-rng", bad.Setting!.Name);
    }

    [Fact]
    public void A_settings_file_gives_a_list_and_flags_replace_it_rather_than_mix()
    {
        string file = Path.Combine(_directory, "appsettings.json");
        File.WriteAllText(file, $$"""{ "KvmSharp": { "Kernel": "{{_kernel}}", "Drive": [ "file={{_diskA}}", "file={{_diskB}}" ] } }""");
        var fromFile = Settings.Load(new Dictionary<string, string?>(), files: [file]).BindRunOptions().Validate(Host);
        Assert.Equal([_diskA, _diskB], fromFile.Drives.Select(d => d.Path));

        var line = new CommandLine().Parse(["run", "--drive", $"file={_diskB}"]);
        var flagsWin = Settings.Load(line.Settings, files: [file]).BindRunOptions().Validate(Host);
        Assert.Equal([_diskB], flagsWin.Drives.Select(d => d.Path));
    }

    [Theory]
    [InlineData("file=", "file")]
    [InlineData("readonly=on", "file=")]
    [InlineData("file=x.img,cache=weird", "cache")]
    [InlineData("file=x.img,bogus=1", "bogus")]
    public void A_malformed_drive_is_refused_naming_the_drive_setting(string drive, string mentioned)
    {
        var e = Assert.Throws<OptionsException>(() => Bind("run", "--kernel", _kernel, "--drive", drive).Validate(Host));
        Assert.Equal("drive", e.Setting!.Name);
        Assert.Contains(mentioned, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void A_missing_image_or_the_same_image_twice_is_refused_before_the_vm_exists()
    {
        string missing = Path.Combine(_directory, "nope.img");
        var e = Assert.Throws<OptionsException>(() => Bind("run", "--kernel", _kernel, "--drive", $"file={missing}").Validate(Host));
        Assert.Equal("drive", e.Setting!.Name);
        Assert.Contains(missing, e.Message);
        var twice = Assert.Throws<OptionsException>(() => Bind("run", "--kernel", _kernel, "--drive", $"file={_diskA}", "--drive", $"file={_diskA},readonly=on").Validate(Host));
        Assert.Contains("already attached", twice.Message);
    }

    [Fact]
    public void Console_virtio_moves_the_default_console_to_hvc0_and_leaves_a_given_cmdline_alone()
    {
        var virtio = Bind("run", "--kernel", _kernel, "--console", "virtio").Validate(Host);
        Assert.True(virtio.VirtioConsole);
        Assert.Equal(RunOptions.DefaultVirtioConsoleCmdline, virtio.Cmdline);
        Assert.Contains("console=hvc0", virtio.Cmdline);
        var given = Bind("run", "--kernel", _kernel, "--console", "VIRTIO", "--cmdline", "console=ttyS0 quiet").Validate(Host);
        Assert.True(given.VirtioConsole);
        Assert.Equal("console=ttyS0 quiet", given.Cmdline);
        Assert.False(Bind("run", "--kernel", _kernel).Validate(Host).VirtioConsole);
        Assert.Equal(RunOptions.DefaultCmdline, Bind("run", "--kernel", _kernel, "--console", "serial").Validate(Host).Cmdline);
    }

    [Fact]
    public void Virtio_devices_need_a_linux_guest()
    {
        var drive = Assert.Throws<OptionsException>(() => Bind("run", "--drive", $"file={_diskA}").Validate(Host));
        Assert.Contains("only applies with --kernel", drive.Message);
        Assert.Contains("only applies with --kernel", Assert.Throws<OptionsException>(() => Bind("run", "--console", "virtio").Validate(Host)).Message);
        var console = Assert.Throws<OptionsException>(() => Bind("run", "--console", "tty").Validate(Host));
        Assert.Equal("console", console.Setting!.Name);
        Assert.Contains("give serial or virtio", console.Message);
    }
}
