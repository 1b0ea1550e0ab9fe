using KvmSharp.Devices.Bus;

namespace KvmSharp.Devices.Pci;

/// <summary>
/// A memory BAR a function declares: its size (a power of two, at least a page, so a BAR never shares a
/// page with another and can be mapped alone), whether it is 64-bit (it then also takes the next BAR
/// register for the upper half), whether it is prefetchable, and the device that serves it.
/// </summary>
public sealed class PciBar
{
    /// <summary>The smallest BAR KvmSharp declares: one page.</summary>
    public const ulong MinimumSize = 0x1000;

    public PciBar(int index, ulong size, bool is64Bit, bool prefetchable, IBusDevice region, string name)
    {
        ArgumentNullException.ThrowIfNull(region);
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (index < 0 || index > (is64Bit ? 4 : 5))
        {
            throw new ArgumentOutOfRangeException(nameof(index), index, $"a {(is64Bit ? "64" : "32")}-bit BAR index must be 0..{(is64Bit ? 4 : 5)}.");
        }

        if (!ulong.IsPow2(size) || size < MinimumSize || (!is64Bit && size > 1UL << 31))
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, "a BAR size must be a power of two of at least 4 KiB (at most 2 GiB for a 32-bit BAR).");
        }

        Index = index;
        Size = size;
        Is64Bit = is64Bit;
        Prefetchable = prefetchable;
        Region = region;
        Name = name;
    }

    /// <summary>BAR register index (0..5); a 64-bit BAR also uses <c>Index + 1</c>.</summary>
    public int Index { get; }

    public ulong Size { get; }

    public bool Is64Bit { get; }

    public bool Prefetchable { get; }

    /// <summary>Serves guest accesses, with offsets from the BAR's base.</summary>
    public IBusDevice Region { get; }

    public string Name { get; }

    /// <summary>The read-only low bits of the BAR register (memory space, type, prefetchable).</summary>
    internal uint Flags =>
        (uint)(PciRegs.PCI_BASE_ADDRESS_SPACE_MEMORY
            | (Is64Bit ? PciRegs.PCI_BASE_ADDRESS_MEM_TYPE_64 : PciRegs.PCI_BASE_ADDRESS_MEM_TYPE_32)
            | (Prefetchable ? PciRegs.PCI_BASE_ADDRESS_MEM_PREFETCH : 0));
}
