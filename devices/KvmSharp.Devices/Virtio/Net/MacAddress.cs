using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace KvmSharp.Devices.Virtio.Net;

/// <summary>A 48-bit Ethernet address.</summary>
public readonly record struct MacAddress(ulong Value)
{
    /// <summary>Where a default MAC's host part comes from: stable per host, different between hosts.</summary>
    public const string MachineIdPath = "/etc/machine-id";

    public bool IsMulticast => (Byte(0) & 0x01) != 0;

    public bool IsLocallyAdministered => (Byte(0) & 0x02) != 0;

    public byte Byte(int index) => (byte)(Value >> (8 * (5 - index)));

    public void CopyTo(Span<byte> destination)
    {
        for (int i = 0; i < 6; i++) destination[i] = Byte(i);
    }

    /// <summary>"52:54:00:12:34:56" (also accepts '-' separators); false otherwise.</summary>
    public static bool TryParse(string text, out MacAddress mac)
    {
        mac = default;
        string[] parts = text.Split(text.Contains('-') ? '-' : ':');
        if (parts.Length != 6) return false;
        ulong value = 0;
        foreach (string part in parts)
        {
            if (part.Length != 2 || !byte.TryParse(part, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out byte b)) return false;
            value = (value << 8) | b;
        }

        mac = new MacAddress(value);
        return true;
    }

    /// <summary>
    /// The default MAC of a NIC named <paramref name="key"/> (its id=, else its tap): the first six bytes of
    /// SHA-256 over this host's machine id and the key, with the locally administered bit set and the
    /// multicast bit clear. The same VM gets the same MAC at every boot; two NICs with different keys, or on
    /// different hosts, differ (a clash is a 2^-46 chance).
    /// </summary>
    public static MacAddress Default(string key, string? machineId = null)
    {
        ArgumentNullException.ThrowIfNull(key);
        machineId ??= ReadMachineId();
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes($"kvmsharp-net\0{machineId}\0{key}"), hash);
        hash[0] = (byte)((hash[0] & 0xFC) | 0x02);
        ulong value = 0;
        for (int i = 0; i < 6; i++) value = (value << 8) | hash[i];
        return new MacAddress(value);
    }

    public override string ToString()
        => string.Create(CultureInfo.InvariantCulture, $"{Byte(0):x2}:{Byte(1):x2}:{Byte(2):x2}:{Byte(3):x2}:{Byte(4):x2}:{Byte(5):x2}");

    private static string ReadMachineId()
    {
        try
        {
            return File.ReadAllText(MachineIdPath).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // No machine id (a minimal container): the host name still tells hosts apart.
            return Environment.MachineName;
        }
    }
}
