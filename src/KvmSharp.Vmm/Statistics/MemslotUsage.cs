using System.Globalization;

namespace KvmSharp.Vmm.Statistics;

/// <summary>
/// How many memslots a VM uses: the user's slots, the kernel slots they are carved into (page tracking
/// takes read-only pieces from the same per-address-space budget), and how many slots tracking had to carve
/// coarser because kernel ids ran out.
/// </summary>
public readonly record struct MemslotUsage(int UserSlots, int KernelSlots, int TrackingKernelSlots, int CoarsenedSlots, int SlotsPerAddressSpace)
{
    public string Format() => string.Create(CultureInfo.InvariantCulture,
        $"memslots: {UserSlots} user, {KernelSlots} in the kernel ({TrackingKernelSlots} taken by page tracking, {CoarsenedSlots} slot(s) carved coarser), {SlotsPerAddressSpace} per address space");
}
