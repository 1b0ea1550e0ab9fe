using System.Collections;
using System.Text;

namespace KvmSharp.Exec;

/// <summary>
/// What the guest runs, as a POSIX shell script the guest's exec init hands to the host root's /bin/sh
/// inside the chroot: cd to the caller's directory, export the caller's environment (minus variables
/// that only mean something on the host), exec the command. Every value is single-quoted.
/// </summary>
public static class ExecRequest
{
    /// <summary>Exit status when the caller's directory does not exist in the guest (as a shell's for a command it cannot run).</summary>
    public const int NoWorkingDirectory = 127;

    private static readonly string[] HostOnlyPrefixes = ["SSH_", "XDG_", "DBUS_", "KVMSHARP__"];
    private static readonly string[] HostOnlyNames = ["DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY", "PWD", "OLDPWD", "SHLVL", "_", "TERMCAP", "GPG_AGENT_INFO"];

    /// <summary>Whether <paramref name="name"/> is passed to the guest: a shell identifier that is not host-only.</summary>
    public static bool IsPassed(string name)
    {
        if (name.Length == 0 || !(char.IsAsciiLetter(name[0]) || name[0] == '_')) return false;
        foreach (char c in name)
            if (!(char.IsAsciiLetterOrDigit(c) || c == '_')) return false;
        if (HostOnlyNames.Contains(name)) return false;
        return !HostOnlyPrefixes.Any(prefix => name.StartsWith(prefix, StringComparison.Ordinal));
    }

    /// <summary>The process's environment as pairs, sorted by name.</summary>
    public static IReadOnlyList<KeyValuePair<string, string>> CurrentEnvironment() =>
        Environment.GetEnvironmentVariables().Cast<DictionaryEntry>()
            .Select(entry => new KeyValuePair<string, string>((string)entry.Key, (string?)entry.Value ?? ""))
            .OrderBy(pair => pair.Key, StringComparer.Ordinal).ToArray();

    /// <summary>The script: cd, exports, exec.</summary>
    public static string Script(IReadOnlyList<string> command, string workingDirectory, IEnumerable<KeyValuePair<string, string>> environment)
    {
        if (command.Count == 0) throw new ArgumentException("no command", nameof(command));
        var script = new StringBuilder();
        bool hasPath = false;
        foreach (var (name, value) in environment)
        {
            if (!IsPassed(name) || value.Contains('\0')) continue;
            hasPath |= name == "PATH";
            script.Append("export ").Append(Quote($"{name}={value}")).Append('\n');
        }
        if (!hasPath) script.Append("export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");
        script.Append("export PWD=").Append(Quote(workingDirectory)).Append('\n');
        // sh says which directory it cannot enter.
        script.Append("cd ").Append(Quote(workingDirectory)).Append(" || exit ").Append(NoWorkingDirectory).Append('\n');
        script.Append("exec");
        foreach (string arg in command) script.Append(' ').Append(Quote(arg));
        script.Append('\n');
        return script.ToString();
    }

    /// <summary>Single-quoted for sh: 'it'\''s'.</summary>
    public static string Quote(string value) => "'" + value.Replace("'", "'\\''") + "'";
}
