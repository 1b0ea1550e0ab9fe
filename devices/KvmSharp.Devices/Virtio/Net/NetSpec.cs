namespace KvmSharp.Devices.Virtio.Net;

/// <summary>
/// One <c>--net tap=NAME[,mac=MAC][,id=ID]</c>: a virtio-net NIC on an existing tap. Parse with
/// <see cref="TryParse"/>, open the tap with <see cref="TapDevice.Open"/>.
/// </summary>
/// <param name="Tap">The tap interface's name.</param>
/// <param name="Mac">mac=: the guest's MAC, or null for <see cref="MacAddress.Default"/>.</param>
/// <param name="Id">id=: the NIC's name in logs (and the default MAC's key), or null.</param>
public sealed record NetSpec(string Tap, MacAddress? Mac = null, string? Id = null)
{
    public const string Syntax = "tap=NAME[,mac=MAC][,id=ID]";

    /// <summary>The NIC's name in messages: its id, else its tap.</summary>
    public string DisplayName => Id ?? Tap;

    /// <summary>The MAC the guest sees: mac=, else the default for the id (or tap).</summary>
    public MacAddress EffectiveMac => Mac ?? MacAddress.Default(DisplayName);

    /// <summary>Parse a <c>--net</c> value; false with a one-line error naming the bad item and the fix.</summary>
    public static bool TryParse(string text, out NetSpec? spec, out string? error)
    {
        spec = null;
        string? tap = null, id = null;
        MacAddress? mac = null;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        if (string.IsNullOrWhiteSpace(text))
        {
            error = $"--net: empty value; give {Syntax}";
            return false;
        }

        foreach (string part in text.Split(','))
        {
            int equals = part.IndexOf('=');
            if (equals <= 0)
            {
                error = part.Length == 0
                    ? $"--net: an empty item in '{text}'; separate KEY=VALUE items with single commas ({Syntax})"
                    : $"--net: '{part}' is not KEY=VALUE; give {Syntax}";
                return false;
            }

            string key = part[..equals], value = part[(equals + 1)..];
            if (!seen.Add(key))
            {
                error = $"--net: {key}= is given twice; give it once";
                return false;
            }

            switch (key)
            {
                case "tap":
                    if (!TapDevice.IsValidName(value))
                    {
                        error = $"--net: tap={value} is not an interface name; give 1 to 15 characters without '/', ':' or spaces";
                        return false;
                    }

                    tap = value;
                    break;
                case "mac":
                    if (!MacAddress.TryParse(value, out var parsed))
                    {
                        error = $"--net: mac={value} is not a MAC address; give six hex pairs such as 52:54:00:12:34:56";
                        return false;
                    }

                    if (parsed.IsMulticast || parsed.Value == 0)
                    {
                        error = $"--net: mac={value} is a multicast or zero address; give a unicast one (the first byte even), e.g. 02:00:00:00:00:01";
                        return false;
                    }

                    mac = parsed;
                    break;
                case "id":
                    if (value.Length == 0 || value.Any(char.IsControl))
                    {
                        error = "--net: id= is empty or has control characters; give a name such as id=net0";
                        return false;
                    }

                    id = value;
                    break;
                default:
                    error = $"--net: unknown key '{key}'; give {Syntax}";
                    return false;
            }
        }

        if (tap is null)
        {
            error = $"--net: tap= is missing; give {Syntax} (create the tap with: ip tuntap add dev tap0 mode tap)";
            return false;
        }

        spec = new NetSpec(tap, mac, id);
        error = null;
        return true;
    }
}
