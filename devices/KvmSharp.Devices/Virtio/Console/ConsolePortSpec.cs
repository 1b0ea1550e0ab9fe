namespace KvmSharp.Devices.Virtio.Console;

/// <summary>
/// One <c>--port name=NAME,path=FILE|socket=PATH</c>: a named virtio-console port (multiport) the guest
/// sees as <c>/dev/vportNpM</c> with that name (udev links it as <c>/dev/virtio-ports/NAME</c>).
/// <c>path=FILE</c> appends the port's output to FILE (no input); <c>socket=PATH</c> listens on a unix
/// socket and connects one client both ways. Parse with <see cref="Parse"/>, then <see cref="Open"/>.
/// </summary>
/// <param name="Name">The port's name, as the guest sees it (e.g. org.qemu.guest_agent.0).</param>
/// <param name="FilePath">path=FILE, or null.</param>
/// <param name="SocketPath">socket=PATH, or null.</param>
public sealed record ConsolePortSpec(string Name, string? FilePath, string? SocketPath)
{
    /// <summary>The syntax, for help texts and errors.</summary>
    public const string Syntax = "name=NAME,path=FILE|socket=PATH";

    /// <summary>Parse a <c>--port</c> value. Throws <see cref="ConsolePortSpecException"/> with a one-line message.</summary>
    public static ConsolePortSpec Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return TryParse(text, out var spec, out string? error) ? spec! : throw new ConsolePortSpecException(error!);
    }

    /// <summary>Parse a <c>--port</c> value; false with a one-line error naming the bad key or value and the fix.</summary>
    public static bool TryParse(string text, out ConsolePortSpec? spec, out string? error)
    {
        spec = null;
        string? name = null, path = null, socket = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            error = $"--port: empty value; give {Syntax}";
            return false;
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        // ",," stands for a comma inside a value, as in --drive.
        foreach (string escaped in text.Replace(",,", "\0", StringComparison.Ordinal).Split(','))
        {
            string part = escaped.Replace('\0', ',');
            int equals = part.IndexOf('=');
            if (equals <= 0)
            {
                error = $"--port: '{part}' is not KEY=VALUE; give {Syntax}";
                return false;
            }

            string key = part[..equals], value = part[(equals + 1)..];
            if (!seen.Add(key))
            {
                error = $"--port: {key}= is given twice; give it once";
                return false;
            }

            switch (key)
            {
                case "name":
                    if (value.Length == 0 || value.Length > 255 || !value.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_'))
                    {
                        error = $"--port: name={value} is not valid; use 1 to 255 letters, digits, '.', '-' or '_'";
                        return false;
                    }

                    name = value;
                    break;
                case "path":
                case "socket":
                    if (value.Length == 0)
                    {
                        error = $"--port: {key}= is empty; give a file path";
                        return false;
                    }

                    if (key == "path")
                    {
                        path = value;
                    }
                    else
                    {
                        socket = value;
                    }

                    break;
                default:
                    error = $"--port: unknown key '{key}'; the keys are name, path and socket ({Syntax})";
                    return false;
            }
        }

        if (name is null)
        {
            error = $"--port: name= is missing; give {Syntax}";
            return false;
        }

        if ((path is null) == (socket is null))
        {
            error = $"--port {name}: give exactly one of path=FILE or socket=PATH";
            return false;
        }

        spec = new ConsolePortSpec(name, path, socket);
        error = null;
        return true;
    }

    /// <summary>Open the port's host side: the output file (appended, created if needed) or the listening socket. Throws <see cref="IOException"/> with a one-line message naming the port.</summary>
    public VirtioConsolePort Open()
    {
        IConsolePortBackend backend = FilePath is not null
            ? FileConsolePortBackend.Open(Name, FilePath)
            : UnixSocketConsolePortBackend.Listen(Name, SocketPath!);
        return new VirtioConsolePort(Name, backend);
    }
}
