using System.Text.Json;
using KvmSharp.Cli;

namespace KvmSharp.Api;

/// <summary>
/// --config-file FILE: the VM in the API's bodies ({"boot-source": ..., "machine-config": ..., "drives": [...]}), read
/// as a settings layer (KvmSharp:Memory, KvmSharp:Drive:0, ...) so it is validated exactly as flags are. A file that
/// cannot be read or parsed, or names what is not supported yet, is an <see cref="OptionsException"/> (exit 2).
/// </summary>
public static class ConfigFile
{
    /// <summary>The --config-file flag, else KVMSHARP__CONFIGFILE; null when neither is set.</summary>
    public static string? PathFrom(IReadOnlyDictionary<string, string?> flags) =>
        flags.TryGetValue(RunSetting.ConfigFile.ConfigurationKey, out string? flag) && flag is not null
            ? flag
            : Environment.GetEnvironmentVariable(RunSetting.ConfigFile.EnvironmentVariable);

    public static Dictionary<string, string?> Read(string path)
    {
        if (Directory.Exists(path)) throw Invalid(path, "is a directory; give the JSON file");
        if (!File.Exists(path)) throw Invalid(path, "does not exist; give an existing JSON file");
        VmConfigDocument? document;
        try
        {
            using var stream = File.OpenRead(path);
            document = JsonSerializer.Deserialize(stream, ApiJsonContext.Relaxed.VmConfigDocument);
        }
        catch (JsonException e)
        {
            throw Invalid(path, $"not valid JSON for a VM config: {e.Message}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Invalid(path, e.Message);
        }
        if (document is null) throw Invalid(path, "the file holds null; give a JSON object");
        var definition = VmDefinition.FromDocument(document, out string? problem);
        if (problem is not null) throw Invalid(path, problem);
        return definition.ToConfigurationKeys();
    }

    private static OptionsException Invalid(string path, string reason) => new(RunSetting.ConfigFile, path, reason);
}
