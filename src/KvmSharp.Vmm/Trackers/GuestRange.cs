using System.Globalization;

namespace KvmSharp.Vmm.Trackers;

/// <summary>A guest-physical range [Start, End), parsed from `GPA`, `GPA-GPA` (end exclusive) or `GPA+SIZE`.</summary>
public readonly record struct GuestRange(ulong Start, ulong End)
{
    public const ulong PageSize = 4096;

    public ulong FirstGfn => Start / PageSize;
    public ulong EndGfn => End / PageSize + (End % PageSize != 0 ? 1UL : 0);
    public bool Contains(ulong gpa) => gpa >= Start && gpa < End;

    /// <summary>Parse one range; a single address means its whole page.</summary>
    public static GuestRange Parse(string text)
    {
        text = text.Trim();
        int dash = text.IndexOf('-'), plus = text.IndexOf('+');
        if (dash > 0)
        {
            ulong start = Number(text[..dash], text), end = Number(text[(dash + 1)..], text);
            if (end <= start) throw new FormatException($"range '{text}': the end must be above the start");
            return new GuestRange(start, end);
        }
        if (plus > 0)
        {
            ulong start = Number(text[..plus], text), size = Number(text[(plus + 1)..], text);
            if (size == 0 || start + size < start) throw new FormatException($"range '{text}': the size must be non-zero and not wrap");
            return new GuestRange(start, start + size);
        }
        ulong address = Number(text, text);
        ulong page = address & ~(PageSize - 1);
        if (page > ulong.MaxValue - PageSize) throw new FormatException($"range '{text}': the page of 0x{address:x} ends beyond the 64-bit address space");
        return new GuestRange(page, page + PageSize);
    }

    /// <summary>Comma-separated ranges.</summary>
    public static IReadOnlyList<GuestRange> ParseList(string text) =>
        text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Parse).ToList();

    private static ulong Number(string part, string whole)
    {
        part = part.Trim();
        ulong multiplier = 1;
        if (part.Length > 1 && char.ToUpperInvariant(part[^1]) is 'K' or 'M' or 'G' && !part.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            multiplier = char.ToUpperInvariant(part[^1]) switch { 'K' => 1UL << 10, 'M' => 1UL << 20, _ => 1UL << 30 };
            part = part[..^1];
        }
        bool parsed = part.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? ulong.TryParse(part[2..], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong value)
            : ulong.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out value);
        if (!parsed) throw new FormatException($"range '{whole}': '{part}' is not an address (use 0x... or decimal)");
        // 20000000000G would wrap to a small, wrong address: refuse it instead.
        if (value > ulong.MaxValue / multiplier)
            throw new FormatException($"range '{whole}': '{part}{Suffix(multiplier)}' is beyond the 64-bit address space (at most 0x{ulong.MaxValue:x} bytes)");
        return value * multiplier;
    }

    private static string Suffix(ulong multiplier) => multiplier switch { 1UL << 10 => "K", 1UL << 20 => "M", 1UL << 30 => "G", _ => "" };

    public override string ToString() => $"0x{Start:x}-0x{End:x}";
}
