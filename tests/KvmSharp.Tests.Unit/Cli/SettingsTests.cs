using KvmSharp.Cli;
using Xunit;

namespace KvmSharp.Tests.Unit.Cli;

/// <summary>Settings: the layers' precedence, string binding that cannot fail, and settings files that are wrong.</summary>
public sealed class SettingsTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("kvmsharp-settings-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private string Json(string name, string text)
    {
        string path = Path.Combine(_directory, name);
        File.WriteAllText(path, text);
        return path;
    }

    private static Dictionary<string, string?> Flags(params (string Key, string Value)[] flags) =>
        flags.ToDictionary(f => $"KvmSharp:{f.Key}", f => (string?)f.Value, StringComparer.OrdinalIgnoreCase);

    [Fact]
    public void Later_files_override_earlier_ones_and_flags_override_files()
    {
        string system = Json("system.json", """{ "KvmSharp": { "Memory": "32M", "Cpus": 2, "Mode": "real" } }""");
        string local = Json("local.json", """{ "KvmSharp": { "Memory": "16M" } }""");

        var settings = Settings.Load(Flags(("Mode", "long")), files: [system, local]);
        var options = settings.BindRunOptions();

        Assert.Equal("16M", options.Memory);
        Assert.Equal("2", options.Cpus);
        Assert.Equal("long", options.Mode);
        Assert.Equal(local, settings.Origin(RunSetting.Memory));
        Assert.Equal(system, settings.Origin(RunSetting.Cpus));
        Assert.Equal("--mode", settings.Origin(RunSetting.Mode));
        Assert.Null(settings.Origin(RunSetting.Kernel));
    }

    [Fact]
    public void The_default_files_are_beside_the_executable_then_etc_then_the_working_directory()
    {
        Assert.Equal(
            [Path.Combine(AppContext.BaseDirectory, "appsettings.json"), "/etc/kvmsharp/appsettings.json", Path.Combine(_directory, "appsettings.json")],
            Settings.Files(_directory));
    }

    [Fact]
    public void Missing_files_are_skipped()
    {
        var options = Settings.Load(Flags(), files: [Path.Combine(_directory, "nope.json")]).BindRunOptions();

        Assert.Null(options.Cpus);
    }

    [Fact]
    public void Any_json_type_binds_as_a_string_for_validation_to_judge()
    {
        string file = Json("types.json", """{ "KvmSharp": { "Cpus": 2.5, "Memfd": "maybe", "Timeout": true, "Track": null } }""");

        var options = Settings.Load(Flags(), files: [file]).BindRunOptions();

        Assert.Equal("2.5", options.Cpus);
        Assert.Equal("maybe", options.Memfd);
        Assert.Equal("True", options.Timeout);
        Assert.Throws<OptionsException>(() => options.Validate(null));
    }

    [Theory]
    [InlineData("""{ "KvmSharp": { "Cpus": 2, """)]
    [InlineData("""{ "KvmSharp": { "Cpus": 2 } } }""")]
    [InlineData("not json")]
    public void Broken_json_names_the_file_and_the_fix(string text)
    {
        string file = Json("broken.json", text);

        var e = Assert.Throws<OptionsException>(() => Settings.Load(Flags(), files: [file]));

        Assert.StartsWith($"invalid settings file {file}: ", e.Message);
        Assert.EndsWith("fix the JSON (or remove the file)", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("""{ "KvmSharp": { "Cpus": [1, 2] } }""", "cpus")]
    [InlineData("""{ "KvmSharp": { "Memory": { "Size": "64M" } } }""", "memory")]
    public void An_object_or_array_where_a_value_belongs_is_refused_even_over_a_lower_layers_value(string text, string setting)
    {
        string lower = Json("lower.json", """{ "KvmSharp": { "Cpus": 1, "Memory": "64M" } }""");
        string file = Json("wrong.json", text);

        var e = Assert.Throws<OptionsException>(() => Settings.Load(Flags(), files: [lower, file]).BindRunOptions());

        Assert.StartsWith($"invalid setting {setting} (", e.Message);
        Assert.Contains($"'an object or array' (from {file}): give a single value", e.Message);
    }

    [Fact]
    public void A_section_that_is_not_an_object_is_refused()
    {
        string file = Json("scalar.json", """{ "KvmSharp": "fast" }""");

        var e = Assert.Throws<OptionsException>(() => Settings.Load(Flags(), files: [file]).BindRunOptions());

        Assert.Contains("KvmSharp must be an object of settings", e.Message);
    }

    [Fact]
    public void Caps_reads_only_the_kvm_device()
    {
        string file = Json("caps.json", """{ "KvmSharp": { "Cpus": "abc", "KvmDevice": "/dev/kvm-test" } }""");

        Assert.Equal("/dev/kvm-test", Settings.Load(Flags(), files: [file]).KvmDevice());
        Assert.Equal("/dev/kvm", Settings.Load(Flags(), files: []).KvmDevice());
        var e = Assert.Throws<OptionsException>(() => Settings.Load(Flags(("KvmDevice", "")), files: []).KvmDevice());
        Assert.Contains("(from --kvm-device)", e.Message);
    }

    [Fact]
    public void The_origin_of_a_refused_value_is_named()
    {
        string file = Json("origin.json", """{ "KvmSharp": { "Cpus": "abc" } }""");
        var settings = Settings.Load(Flags(), files: [file]);

        var e = settings.WithOrigin(Assert.Throws<OptionsException>(() => settings.BindRunOptions().Validate(null)));

        Assert.Contains($"'abc' (from {file})", e.Message);
    }

    [Fact]
    public void A_log_level_the_logging_library_does_not_know_is_refused()
    {
        string file = Json("logging.json", """{ "Logging": { "LogLevel": { "Default": "Verbose" } } }""");

        var e = Assert.Throws<OptionsException>(() => Settings.Load(Flags(), files: [file]).CheckLogLevels());

        Assert.Equal($"invalid setting Logging:LogLevel:Default ({file}): 'Verbose': give Trace, Debug, Information, Warning, Error, Critical or None", e.Message);
        Settings.Load(Flags(), files: [Json("fine.json", """{ "Logging": { "LogLevel": { "Default": "debug", "KvmSharp": "None" } } }""")]).CheckLogLevels();
    }
}
