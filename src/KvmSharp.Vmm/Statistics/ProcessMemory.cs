using System.Globalization;

namespace KvmSharp.Vmm.Statistics;

/// <summary>
/// The process's peak resident memory (VmHWM) and how much of what is resident now is guest RAM, from /proc:
/// guest RAM only grows while the VM runs, so peak minus guest-resident is the VMM's own peak footprint.
/// </summary>
public readonly record struct ProcessMemory(long PeakResidentBytes, long GuestResidentBytes)
{
    /// <summary>Peak resident memory not counting guest RAM.</summary>
    public long VmmPeakBytes => PeakResidentBytes - GuestResidentBytes;

    /// <summary>Read /proc/self; guest RAM is the mappings inside <paramref name="guestRanges"/> (host address, size). Null off Linux.</summary>
    public static ProcessMemory? Read(IReadOnlyList<(ulong HostAddress, ulong Size)> guestRanges)
    {
        try
        {
            long peak = 0;
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) peak = KiloBytes(line);
            return new ProcessMemory(peak, GuestResident(File.ReadLines("/proc/self/smaps"), guestRanges));
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Sum of the Rss of the smaps mappings that lie inside one of <paramref name="guestRanges"/>.</summary>
    public static long GuestResident(IEnumerable<string> smaps, IReadOnlyList<(ulong HostAddress, ulong Size)> guestRanges)
    {
        long total = 0;
        bool inGuest = false;
        foreach (var line in smaps)
        {
            int dash = line.IndexOf('-');
            int space = line.IndexOf(' ');
            if (dash > 0 && space > dash && ulong.TryParse(line.AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong start)
                && ulong.TryParse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong end))
            {
                inGuest = guestRanges.Any(r => start >= r.HostAddress && end <= r.HostAddress + r.Size);
                continue;
            }
            if (inGuest && line.StartsWith("Rss:", StringComparison.Ordinal)) total += KiloBytes(line);
        }
        return total;
    }

    private static long KiloBytes(string line)
    {
        var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return parts.Length >= 2 && long.TryParse(parts[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out long kb) ? kb * 1024 : 0;
    }
}
