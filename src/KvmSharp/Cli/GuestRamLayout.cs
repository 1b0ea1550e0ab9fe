using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Trackers;

namespace KvmSharp.Cli;

/// <summary>
/// Where guest RAM really is for a given size, as <see cref="VirtualMachine"/> lays it out: from 0 up
/// to 3 GiB, then the PCI hole (3-4 GiB, not RAM), and any RAM beyond 3 GiB remapped from 4 GiB up.
/// </summary>
public readonly record struct GuestRamLayout(ulong MemoryBytes)
{
    public ulong LowEnd => Vmm.Boot.Linux.LinuxLoader.LowRamEnd(MemoryBytes);
    public ulong HighSize => MemoryBytes - LowEnd;
    public ulong HighEnd => VirtualMachine.HighRamBase + HighSize;

    /// <summary>The RAM ranges, e.g. "0x0-0xc0000000 and 0x100000000-0x140000000".</summary>
    public override string ToString() =>
        HighSize == 0 ? $"0x0-0x{LowEnd:x}" : $"0x0-0x{LowEnd:x} and 0x{VirtualMachine.HighRamBase:x}-0x{HighEnd:x}";

    /// <summary>True when [start, end) lies inside one RAM range.</summary>
    public bool IsRam(GuestRange range) =>
        range.End <= LowEnd || (HighSize > 0 && range.Start >= VirtualMachine.HighRamBase && range.End <= HighEnd);

    /// <summary>True when the range touches the PCI hole (which only exists once RAM reaches it).</summary>
    public bool TouchesHole(GuestRange range) =>
        MemoryBytes > VirtualMachine.LowRamLimit && range.Start < VirtualMachine.HighRamBase && range.End > VirtualMachine.LowRamLimit;
}
