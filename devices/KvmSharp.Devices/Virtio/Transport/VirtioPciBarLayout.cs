using KvmSharp.Devices.Pci;

namespace KvmSharp.Devices.Virtio.Transport;

/// <summary>
/// Where the virtio structures live in the function's single 64-bit BAR: each starts on its own page
/// (common cfg, ISR, device cfg, notify, MSI-X table, PBA), so any of them could later be mapped or
/// trapped alone. The BAR is the next power of two that holds them all.
/// </summary>
public sealed class VirtioPciBarLayout
{
    private const ulong Page = 0x1000;

    /// <summary>Bytes between two queues' doorbells; 4 keeps every doorbell dword-aligned for a 2-byte ioeventfd.</summary>
    public const uint NotifyOffMultiplier = 4;

    /// <summary>Bytes of device-specific configuration exposed (Linux maps at most a page of it).</summary>
    public const uint DeviceConfigLength = 0x1000;

    public VirtioPciBarLayout(int queueCount, int msixVectorCount, int msixTableSize, int msixPbaSize)
    {
        CommonOffset = 0;
        IsrOffset = CommonOffset + Page;
        DeviceConfigOffset = IsrOffset + Page;
        NotifyOffset = DeviceConfigOffset + Page;
        NotifyLength = (uint)Math.Max(1, queueCount) * NotifyOffMultiplier;
        MsixTableOffset = NotifyOffset + RoundUpToPage(NotifyLength);
        MsixPbaOffset = MsixTableOffset + RoundUpToPage((ulong)msixTableSize);
        ulong end = MsixPbaOffset + RoundUpToPage((ulong)msixPbaSize);
        Size = Math.Max(PciBar.MinimumSize, System.Numerics.BitOperations.RoundUpToPowerOf2(end));
        MsixVectorCount = msixVectorCount;
    }

    public ulong CommonOffset { get; }

    public uint CommonLength => VirtioPciRegs.StructVirtioPciCommonCfgSize;

    public ulong IsrOffset { get; }

    public uint IsrLength => 1;

    public ulong DeviceConfigOffset { get; }

    public ulong NotifyOffset { get; }

    public uint NotifyLength { get; }

    public ulong MsixTableOffset { get; }

    public ulong MsixPbaOffset { get; }

    public int MsixVectorCount { get; }

    /// <summary>The BAR's size (a power of two).</summary>
    public ulong Size { get; }

    private static ulong RoundUpToPage(ulong length) => (length + Page - 1) & ~(Page - 1);
}
