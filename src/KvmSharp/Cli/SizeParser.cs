using System.Globalization;

namespace KvmSharp.Cli;

/// <summary>Parses sizes such as 64M, 1G, 512K or a plain byte count.</summary>
public static class SizeParser
{
    public static bool TryParse(string? text, out ulong bytes)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text)) return false;
        text = text.Trim();
        ulong multiplier = 1;
        char last = char.ToUpperInvariant(text[^1]);
        if (last == 'B' && text.Length > 1 && char.IsLetter(text[^2])) { text = text[..^1]; last = char.ToUpperInvariant(text[^1]); }
        switch (last)
        {
            case 'K': multiplier = 1UL << 10; break;
            case 'M': multiplier = 1UL << 20; break;
            case 'G': multiplier = 1UL << 30; break;
            case 'T': multiplier = 1UL << 40; break;
        }
        if (multiplier != 1) text = text[..^1];
        if (!ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out ulong value)) return false;
        if (value > ulong.MaxValue / multiplier) return false;
        bytes = value * multiplier;
        return true;
    }

    public static bool TryParseAddress(string? text, out ulong address)
    {
        address = 0;
        if (string.IsNullOrWhiteSpace(text)) return false;
        text = text.Trim();
        return text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? ulong.TryParse(text[2..], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out address)
            : ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out address);
    }
}
