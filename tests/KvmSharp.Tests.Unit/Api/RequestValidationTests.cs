using KvmSharp.Api;
using KvmSharp.Cli;
using Xunit;

namespace KvmSharp.Tests.Unit.Api;

/// <summary>
/// The API's bodies are checked by their own rules, then by `run`'s validation of the settings they map onto; a
/// refused change leaves the pre-boot configuration as it was.
/// </summary>
public sealed class RequestValidationTests : IDisposable
{
    private const ulong Host = 16UL << 30;
    private readonly string _directory = Directory.CreateTempSubdirectory("kvmsharp-api-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private PreBootConfiguration PreBoot(Action<RunOptions>? flags = null) => new(() =>
    {
        var options = new RunOptions();
        flags?.Invoke(options);
        return options;
    }, options => options.Validate(Host));

    private string Disk(string name, long size = 1 << 20)
    {
        string path = Path.Combine(_directory, name);
        using var stream = File.Create(path);
        stream.SetLength(size);
        return path;
    }

    [Theory]
    [InlineData(null, 64L, "vcpu_count and mem_size_mib")]
    [InlineData(1, null, "vcpu_count and mem_size_mib")]
    public void Machine_config_needs_both_fields(int? cpus, long? memory, string expected) =>
        Assert.Contains(expected, VmDefinition.Check(new MachineConfig(cpus, memory)), StringComparison.Ordinal);

    [Theory]
    [InlineData(null, "/x.img", "drive_id must be")]
    [InlineData("bad id", "/x.img", "drive_id must be")]
    [InlineData("a,b", "/x.img", "drive_id must be")]
    [InlineData("root", null, "path_on_host")]
    [InlineData("root", " ", "path_on_host")]
    public void Drive_body_rules(string? id, string? path, string expected) =>
        Assert.Contains(expected, VmDefinition.Check(new Drive(id, path)), StringComparison.Ordinal);

    [Fact]
    public void Drive_id_in_the_body_must_match_the_path() =>
        Assert.Contains("differs from the path's 'other'", VmDefinition.Check(new Drive("root", "/x.img"), "other"), StringComparison.Ordinal);

    [Fact]
    public void Boot_source_needs_a_kernel() =>
        Assert.Contains("kernel_image_path", VmDefinition.Check(new BootSource(null)), StringComparison.Ordinal);

    [Fact]
    public void Machine_config_beyond_the_host_is_refused_by_runs_own_check_and_changes_nothing()
    {
        var preBoot = PreBoot();
        Assert.Null(preBoot.TryChange(d => d with { Machine = new MachineConfig(2, 128) }, RunSetting.Memory, RunSetting.Cpus));

        string? refused = preBoot.TryChange(d => d with { Machine = new MachineConfig(1, 64L << 10) }, RunSetting.Memory, RunSetting.Cpus);

        Assert.NotNull(refused);
        Assert.Contains("invalid setting memory", refused, StringComparison.Ordinal);
        Assert.Contains("'65536M'", refused, StringComparison.Ordinal);
        Assert.Equal(new MachineConfig(2, 128), preBoot.Definition.Machine);
    }

    [Fact]
    public void Too_many_vcpus_are_refused()
    {
        string? refused = PreBoot().TryChange(d => d with { Machine = new MachineConfig(100_000, 64) }, RunSetting.Memory, RunSetting.Cpus);
        Assert.Contains("invalid setting cpus", refused, StringComparison.Ordinal);
    }

    [Fact]
    public void A_missing_kernel_is_refused_naming_it()
    {
        string kernel = Path.Combine(_directory, "missing-bzImage");
        string? refused = PreBoot().TryChange(d => d with { Boot = new BootSource(kernel) }, RunSetting.Kernel, RunSetting.Initrd, RunSetting.Cmdline);
        Assert.Contains("invalid setting kernel", refused, StringComparison.Ordinal);
        Assert.Contains(kernel, refused, StringComparison.Ordinal);
    }

    [Fact]
    public void A_drive_before_the_kernel_is_accepted_and_instance_start_refuses_the_incomplete_whole()
    {
        var preBoot = PreBoot();
        string disk = Disk("root.img");

        Assert.Null(preBoot.TryChange(d => d.WithDrive(new Drive("root", disk)), RunSetting.Drive));
        string? refused = preBoot.Start(out bool already);

        Assert.False(already);
        Assert.Contains("--drive only applies with --kernel", refused, StringComparison.Ordinal);
        Assert.False(preBoot.Started.IsCompleted);
    }

    [Fact]
    public void A_missing_drive_image_is_refused_by_drives_own_check()
    {
        // With a kernel named (drives are checked before the kernel is read), the image itself is what is wrong.
        string image = Path.Combine(_directory, "none.img");
        string? refused = PreBoot(o => o.Kernel = Path.Combine(_directory, "bzImage")).TryChange(d => d.WithDrive(new Drive("root", image)), RunSetting.Drive);
        Assert.NotNull(refused);
        Assert.Contains("invalid setting drive", refused, StringComparison.Ordinal);
        Assert.Contains(image, refused, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Instance_start_hands_the_validated_options_once()
    {
        var preBoot = PreBoot();
        Assert.Null(preBoot.TryChange(d => d with { Machine = new MachineConfig(2, 32) }, RunSetting.Memory, RunSetting.Cpus));

        Assert.Null(preBoot.Start(out _));
        Assert.True(preBoot.Started.IsCompletedSuccessfully);
        var started = await preBoot.Started;
        Assert.Equal(2, started.Cpus);
        Assert.Equal(32UL << 20, started.MemoryBytes);

        Assert.NotNull(preBoot.Start(out bool already));
        Assert.True(already);
        Assert.Contains("can only be configured before InstanceStart", preBoot.TryChange(d => d, RunSetting.Memory), StringComparison.Ordinal);
    }

    [Fact]
    public void Drives_keep_their_order_replace_by_id_and_put_the_root_device_first()
    {
        var definition = VmDefinition.Empty
            .WithDrive(new Drive("a", "/a.img"))
            .WithDrive(new Drive("b", "/b,c.img", IsReadOnly: true))
            .WithDrive(new Drive("a", "/a2.img"))
            .WithDrive(new Drive("c", "/c.img", IsRootDevice: true));

        Assert.Equal(["c", "a", "b"], definition.Drives.Select(d => d.DriveId));
        Assert.Equal("file=/b,,c.img,id=b,readonly=on", definition.DriveSpecs()[2]);
        Assert.Equal("file=/a2.img,id=a", definition.DriveSpecs()[1]);
    }

    [Fact]
    public void Config_document_maps_onto_the_settings_keys()
    {
        var document = new VmConfigDocument
        {
            MachineConfig = new MachineConfig(2, 128),
            BootSource = new BootSource("/k", "/i", "console=ttyS0"),
            Drives = [new Drive("root", "/r.img", IsRootDevice: true)],
        };

        var keys = VmDefinition.FromDocument(document, out string? problem).ToConfigurationKeys();

        Assert.Null(problem);
        Assert.Equal("128M", keys["KvmSharp:Memory"]);
        Assert.Equal("2", keys["KvmSharp:Cpus"]);
        Assert.Equal("/k", keys["KvmSharp:Kernel"]);
        Assert.Equal("/i", keys["KvmSharp:Initrd"]);
        Assert.Equal("console=ttyS0", keys["KvmSharp:Cmdline"]);
        Assert.Equal("file=/r.img,id=root", keys["KvmSharp:Drive:0"]);
    }

    [Fact]
    public void Config_document_with_a_network_interface_or_a_duplicate_drive_is_refused()
    {
        var network = System.Text.Json.JsonDocument.Parse("""[{"iface_id":"eth0"}]""").RootElement;
        VmDefinition.FromDocument(new VmConfigDocument { NetworkInterfaces = network }, out string? problem);
        Assert.Contains("not supported yet", problem, StringComparison.Ordinal);

        VmDefinition.FromDocument(new VmConfigDocument { Drives = [new Drive("a", "/a"), new Drive("a", "/b")] }, out problem);
        Assert.Contains("given twice", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Config_file_that_is_not_json_or_has_unknown_fields_is_an_options_error()
    {
        string broken = Path.Combine(_directory, "broken.json");
        File.WriteAllText(broken, "{ \"machine-config\": ");
        var e = Assert.Throws<OptionsException>(() => ConfigFile.Read(broken));
        Assert.Contains("not valid JSON", e.Message, StringComparison.Ordinal);
        Assert.Equal(RunSetting.ConfigFile, e.Setting);

        string unknown = Path.Combine(_directory, "unknown.json");
        File.WriteAllText(unknown, """{ "machine-config": { "vcpu_count": 1, "mem_size_mib": 64, "smt": true } }""");
        e = Assert.Throws<OptionsException>(() => ConfigFile.Read(unknown));
        Assert.Contains("smt", e.Message, StringComparison.Ordinal);

        e = Assert.Throws<OptionsException>(() => ConfigFile.Read(Path.Combine(_directory, "none.json")));
        Assert.Contains("does not exist", e.Message, StringComparison.Ordinal);
    }
}
