using Microsoft.Extensions.Logging;

namespace KvmSharp.Devices.Pci;

/// <summary>Log messages of the PCI model (source-generated, so logging allocates nothing when disabled).</summary>
internal static partial class PciLog
{
    [LoggerMessage(Level = LogLevel.Debug, Message = "PCI {Function} ({Address}): BAR{Index} '{Bar}' mapped at 0x{BaseAddress:x}, size 0x{Size:x}")]
    public static partial void BarMapped(ILogger logger, string function, PciAddress address, int index, string bar, ulong baseAddress, ulong size);

    [LoggerMessage(Level = LogLevel.Debug, Message = "PCI {Function} ({Address}): BAR{Index} '{Bar}' unmapped")]
    public static partial void BarUnmapped(ILogger logger, string function, PciAddress address, int index, string bar);

    [LoggerMessage(Level = LogLevel.Warning, Message = "PCI {Function} ({Address}): the guest placed BAR{Index} '{Bar}' at 0x{BaseAddress:x} (size 0x{Size:x}), which overlaps another device or wraps; it stays unmapped until moved")]
    public static partial void BarRefused(ILogger logger, string function, PciAddress address, int index, string bar, ulong baseAddress, ulong size);
}
