using System.Globalization;

namespace KvmSharp.Devices.Debug;

/// <summary>
/// One <c>--debug-exit [port=P][,width=1|2|4][,qemu=on|off]</c>: where the debug-exit port is and how a write
/// ends the VM. Defaults: port 0x501; qemu=off (the first byte written is the exit status) with width 1;
/// qemu=on (QEMU's isa-debug-exit: status (value &lt;&lt; 1) | 1) with QEMU's default width 2.
/// </summary>
public sealed record DebugExitSpec(ushort Port, int Width, bool Qemu)
{
    public const ushort DefaultPort = 0x501;
    public const string Syntax = "[port=P][,width=1|2|4][,qemu=on|off]";

    /// <summary>KvmSharp's behaviour when --debug-exit is not given.</summary>
    public static readonly DebugExitSpec Default = new(DefaultPort, 1, false);

    /// <summary>Parse a value; false with a one-line error naming the bad item and the fix.</summary>
    public static bool TryParse(string text, out DebugExitSpec? spec, out string? error)
    {
        spec = null;
        error = null;
        ushort port = DefaultPort;
        int? width = null;
        bool qemu = false;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string raw in text.Split(','))
        {
            string part = raw.Trim();
            int equals = part.IndexOf('=');
            if (equals <= 0)
            {
                error = part.Length == 0 ? $"an empty item; give {Syntax}, e.g. port=0xf4,width=4,qemu=on" : $"'{part}' is not KEY=VALUE; give {Syntax}";
                return false;
            }
            string key = part[..equals].ToLowerInvariant(), value = part[(equals + 1)..];
            if (!seen.Add(key))
            {
                error = $"{key}= is given twice; give it once";
                return false;
            }
            switch (key)
            {
                case "port":
                    if (!TryParsePort(value, out port))
                    {
                        error = $"port={value} is not a port; give 0x0 to 0xffff, e.g. port=0xf4";
                        return false;
                    }
                    break;
                case "width":
                    if (value is not ("1" or "2" or "4"))
                    {
                        error = $"width={value} is not valid; give width=1, 2 or 4 (bytes)";
                        return false;
                    }
                    width = value[0] - '0';
                    break;
                case "qemu":
                    if (value.ToLowerInvariant() is not ("on" or "off"))
                    {
                        error = $"qemu={value} is not valid; give qemu=on (QEMU's isa-debug-exit: status (value << 1) | 1) or qemu=off";
                        return false;
                    }
                    qemu = value.Equals("on", StringComparison.OrdinalIgnoreCase);
                    break;
                default:
                    error = $"unknown key '{key}'; give {Syntax}";
                    return false;
            }
        }
        int chosenWidth = width ?? (qemu ? 2 : 1);
        if (port + chosenWidth > 0x10000)
        {
            error = $"port=0x{port:x} with width {chosenWidth} runs past port 0xffff; give a lower port";
            return false;
        }
        spec = new DebugExitSpec(port, chosenWidth, qemu);
        return true;
    }

    /// <summary>Whether the ports [<paramref name="start"/>, start + <paramref name="length"/>) and this device's overlap.</summary>
    public bool Overlaps(int start, int length) => Port < start + length && start < Port + Width;

    private static bool TryParsePort(string text, out ushort port)
    {
        text = text.Trim();
        bool hex = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase);
        return ushort.TryParse(hex ? text[2..] : text, hex ? NumberStyles.AllowHexSpecifier : NumberStyles.None, CultureInfo.InvariantCulture, out port);
    }
}
