using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.EnvironmentVariables;
using Microsoft.Extensions.Configuration.Memory;

namespace KvmSharp.Cli;

/// <summary>
/// The configuration layers, lowest precedence first: the appsettings.json shipped beside the
/// executable (defaults and log levels), /etc/kvmsharp/appsettings.json, ./appsettings.json (the
/// working directory), environment variables (KVMSHARP__NAME), then command-line flags. A settings
/// file that exists but is not valid JSON is an <see cref="OptionsException"/>, not a crash.
/// </summary>
public sealed class Settings
{
    public const string FileName = "appsettings.json";
    public const string SystemDirectory = "/etc/kvmsharp";

    private readonly List<(IConfigurationProvider Provider, string Label)> _labels = new();

    private Settings(ConfigurationManager configuration) => Configuration = configuration;

    public ConfigurationManager Configuration { get; }

    /// <summary>The settings files looked up, lowest precedence first.</summary>
    public static IReadOnlyList<string> Files(string workingDirectory) =>
        [Path.Combine(AppContext.BaseDirectory, FileName), Path.Combine(SystemDirectory, FileName), Path.Combine(workingDirectory, FileName)];

    /// <summary>Build the layers; <paramref name="flags"/> holds "KvmSharp:Name" keys from the command line.</summary>
    public static Settings Load(IReadOnlyDictionary<string, string?> flags, string? workingDirectory = null, IEnumerable<string>? files = null)
    {
        var settings = new Settings(new ConfigurationManager());
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string file in files ?? Files(workingDirectory ?? Directory.GetCurrentDirectory()))
        {
            string full = Path.GetFullPath(file);
            if (!seen.Add(full) || !File.Exists(full)) continue;
            try
            {
                settings.Configuration.AddJsonFile(full, optional: true, reloadOnChange: false);
            }
            catch (Exception e) when (e is InvalidDataException or FormatException or IOException or UnauthorizedAccessException)
            {
                string reason = (e.InnerException ?? e).Message.ReplaceLineEndings(" ");
                throw new OptionsException($"invalid settings file {full}: {reason}; fix the JSON (or remove the file)");
            }
            settings.Label(full);
        }
        settings.Configuration.AddEnvironmentVariables();
        settings.Label("the environment");
        // --config-file: the API's JSON bodies, above the environment and below the flags.
        if (Api.ConfigFile.PathFrom(flags) is { } configFile)
        {
            settings.Configuration.AddInMemoryCollection(Api.ConfigFile.Read(configFile));
            settings.Label($"--config-file {configFile}");
        }
        settings.Configuration.AddInMemoryCollection(flags);
        settings.Label("the command line");
        return settings;
    }

    private void Label(string label)
    {
        var providers = ((IConfigurationRoot)Configuration).Providers.ToList();
        _labels.Add((providers[^1], label));
    }

    /// <summary>The `run` settings, each bound as a string (by the binding source generator) and refused when given as an object or array.</summary>
    public RunOptions BindRunOptions()
    {
        var section = Configuration.GetSection(RunOptions.Section);
        if (section.Value is { } scalar)
            throw new OptionsException($"invalid setting {RunOptions.Section} ({Origin(RunOptions.Section) ?? "settings"}): '{scalar}': {RunOptions.Section} must be an object of settings such as {{ \"Memory\": \"64M\" }}");
        foreach (var setting in RunSetting.All.Where(s => !s.IsRepeatable))
        {
            // Checked in every layer: a lower layer's plain value would hide a higher layer's object.
            for (int i = _labels.Count - 1; i >= 0; i--)
            {
                var (provider, label) = _labels[i];
                if (provider.GetChildKeys([], setting.ConfigurationKey).Any())
                    throw new OptionsException(setting, "an object or array", "give a single value", label == "the environment" ? $"the environment, {setting.EnvironmentVariable}__..." : label);
            }
        }
        var options = new RunOptions();
        section.Bind(options);
        foreach (var setting in RunSetting.All.Where(s => s.IsRepeatable)) options.SetList(setting, ListValues(setting));
        return options;
    }

    /// <summary>
    /// A repeatable setting's values from the highest layer that gives it (layers do not mix: flags
    /// replace a settings file's list): a list (KvmSharp:Drive:0, :1, ...) or a single value.
    /// </summary>
    private IReadOnlyList<string> ListValues(RunSetting setting)
    {
        for (int i = _labels.Count - 1; i >= 0; i--)
        {
            var (provider, _) = _labels[i];
            var children = provider.GetChildKeys([], setting.ConfigurationKey).Distinct().ToList();
            if (children.Count > 0)
            {
                return children.OrderBy(k => int.TryParse(k, out int n) ? n : int.MaxValue).ThenBy(k => k, StringComparer.Ordinal)
                    .Select(k => provider.TryGet($"{setting.ConfigurationKey}:{k}", out string? value) ? value ?? "" : "")
                    .ToList();
            }
            if (provider.TryGet(setting.ConfigurationKey, out string? single) && single is not null) return [single];
        }
        return [];
    }

    /// <summary>Log levels (Logging:LogLevel:CATEGORY) must be names the logging library knows; it would otherwise fail while the host starts.</summary>
    public void CheckLogLevels()
    {
        foreach (var level in Configuration.GetSection("Logging:LogLevel").GetChildren())
        {
            if (level.Value is { } text && Enum.TryParse(text, ignoreCase: true, out Microsoft.Extensions.Logging.LogLevel parsed) && Enum.IsDefined(parsed)) continue;
            throw new OptionsException($"invalid setting {level.Path} ({Origin(level.Path) ?? "settings"}): '{level.Value ?? "an object or array"}': " +
                                       "give Trace, Debug, Information, Warning, Error, Critical or None");
        }
    }

    /// <summary>The KVM device `caps` opens: only that setting matters to it.</summary>
    public string KvmDevice()
    {
        string? device = Configuration[RunSetting.KvmDevice.ConfigurationKey];
        if (device is null) return Kvm.KvmSystem.DefaultPath;
        if (device.Length == 0) throw new OptionsException(RunSetting.KvmDevice, "", $"give the KVM device, e.g. {Kvm.KvmSystem.DefaultPath}").From(Origin(RunSetting.KvmDevice));
        return device;
    }

    /// <summary>Where a setting's value came from: the flag, the environment variable, or the settings file.</summary>
    public string? Origin(RunSetting setting)
    {
        string? label = Origin(setting.ConfigurationKey);
        return label switch
        {
            "the command line" => setting.Flag,
            "the environment" => $"the environment, {setting.EnvironmentVariable}",
            _ => label,
        };
    }

    private string? Origin(string key)
    {
        for (int i = _labels.Count - 1; i >= 0; i--)
        {
            var (provider, label) = _labels[i];
            if (provider.TryGet(key, out _)) return label;
            // A section given as an object has no value of its own, only children.
            if (provider.GetChildKeys([], key).Any()) return label;
        }
        return null;
    }

    /// <summary>The exception, saying where its value came from.</summary>
    public OptionsException WithOrigin(OptionsException e) => e.Setting is { } setting ? e.From(Origin(setting)) : e;
}
