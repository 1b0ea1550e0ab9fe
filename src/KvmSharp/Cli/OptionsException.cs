namespace KvmSharp.Cli;

/// <summary>
/// A setting the user gave is invalid: the message names the setting, every place it can come from,
/// the value, where that value came from (when known) and what to give instead. Exit status 2.
/// </summary>
public sealed class OptionsException : Exception
{
    public OptionsException(RunSetting setting, string value, string expected, string? origin = null)
        : base($"invalid setting {setting.Name} ({setting.Sources}): '{value}'{(origin is null ? "" : $" (from {origin})")}: {expected}")
    {
        Setting = setting;
        Value = value;
        Expected = expected;
        Origin = origin;
    }

    /// <summary>A problem that is not one setting's value, e.g. a settings file that is not valid JSON.</summary>
    public OptionsException(string message) : base(message)
    {
        Value = "";
        Expected = "";
    }

    public RunSetting? Setting { get; }
    public string Value { get; }
    public string Expected { get; }

    /// <summary>Where the value came from: a flag, an environment variable or a settings file.</summary>
    public string? Origin { get; }

    /// <summary>The same error, saying where the value came from.</summary>
    public OptionsException From(string? origin) =>
        Setting is null || origin is null ? this : new OptionsException(Setting, Value, Expected, origin);
}
