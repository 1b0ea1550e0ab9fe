namespace KvmSharp.Vmm.Boot;

/// <summary>The 8-bit checksum of MP and ACPI tables: every byte of the table sums to zero.</summary>
public static class FirmwareChecksum
{
    /// <summary>The byte that makes the sum zero, computed while the checksum field itself is still zero.</summary>
    public static byte Compute(ReadOnlySpan<byte> bytes)
    {
        byte sum = 0;
        foreach (byte b in bytes) sum += b;
        return (byte)(0x100 - sum);
    }
}
