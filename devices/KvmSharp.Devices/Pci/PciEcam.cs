using KvmSharp.Devices.Bus;

namespace KvmSharp.Devices.Pci;

/// <summary>
/// The Enhanced Configuration Access Mechanism (PCIe "ECAM", ACPI MCFG): each function's 4 KiB of
/// configuration space at bus &lt;&lt; 20 | device &lt;&lt; 15 | function &lt;&lt; 12 | register from the window's base.
/// Accesses of 1, 2 or 4 bytes, naturally aligned, reach the function (an aligned 8-byte access is split in
/// two dwords); anything else, and any missing function, reads all-ones and drops writes.
/// </summary>
public sealed class PciEcam : IBusDevice
{
    /// <summary>Bytes of ECAM per bus: 32 devices × 8 functions × 4 KiB.</summary>
    public const ulong BytesPerBus = 1UL << 20;

    private readonly PciRootBus _root;

    internal PciEcam(PciRootBus root, int busCount)
    {
        _root = root;
        Size = SizeFor(busCount);
    }

    /// <summary>Bytes the window covers; register exactly this much on the MMIO bus.</summary>
    public ulong Size { get; }

    /// <summary>Bytes of ECAM for <paramref name="busCount"/> buses starting at bus 0.</summary>
    public static ulong SizeFor(int busCount) => (ulong)busCount * BytesPerBus;

    public void Read(ulong offset, Span<byte> data)
    {
        if (data.Length == 8 && (offset & 7) == 0)
        {
            Read(offset, data[..4]);
            Read(offset + 4, data[4..]);
            return;
        }

        if (offset >= Size)
        {
            data.Fill(0xff);
            return;
        }

        PciConfigAddress target = PciConfigAddress.FromEcamOffset(offset);
        _root.ReadConfig(target.Function, target.Register, data);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.Length == 8 && (offset & 7) == 0)
        {
            Write(offset, data[..4]);
            Write(offset + 4, data[4..]);
            return;
        }

        if (offset >= Size)
        {
            return;
        }

        PciConfigAddress target = PciConfigAddress.FromEcamOffset(offset);
        _root.WriteConfig(target.Function, target.Register, data);
    }
}
