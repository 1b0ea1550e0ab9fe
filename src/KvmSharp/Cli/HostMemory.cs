using System.Globalization;

namespace KvmSharp.Cli;

/// <summary>The host's RAM, from MemTotal in /proc/meminfo: --memory above it is refused unless forced.</summary>
public static class HostMemory
{
    /// <summary>MemTotal in bytes, or null when /proc/meminfo cannot be read or has no MemTotal line.</summary>
    public static ulong? ReadTotal(string path = "/proc/meminfo")
    {
        try
        {
            foreach (string line in File.ReadLines(path))
            {
                if (!line.StartsWith("MemTotal:", StringComparison.Ordinal)) continue;
                string[] parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length >= 2 && ulong.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out ulong kib) && kib <= ulong.MaxValue / 1024)
                    return kib * 1024;
                return null;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return null;
    }
}
