using KvmSharp.Devices.Bus;

namespace KvmSharp.Devices.Pci;

/// <summary>
/// A PCI function as the root bus sees it: a configuration space and BARs to place. The configuration
/// calls come from vCPU threads (through <see cref="PciConfigPorts"/> or <see cref="PciEcam"/>), one
/// naturally aligned access of 1, 2 or 4 bytes within one dword at a time, and must not allocate.
/// </summary>
public interface IPciFunction
{
    /// <summary>Short name for messages and bus ranges, e.g. "virtio-blk0".</summary>
    string Name { get; }

    /// <summary>
    /// Called once by <see cref="PciRootBus.Attach"/>: the function learns its address, places its BARs
    /// through <paramref name="barAllocator"/> and maps them on <paramref name="mmioBus"/> whenever the guest
    /// enables memory decoding.
    /// </summary>
    void Attach(PciAddress address, DeviceBus mmioBus, IPciBarAllocator barAllocator);

    /// <summary>Read <paramref name="data"/> at configuration offset <paramref name="offset"/> (0..4095).</summary>
    void ReadConfig(int offset, Span<byte> data);

    /// <summary>Write <paramref name="data"/> at configuration offset <paramref name="offset"/> (0..4095).</summary>
    void WriteConfig(int offset, ReadOnlySpan<byte> data);
}
