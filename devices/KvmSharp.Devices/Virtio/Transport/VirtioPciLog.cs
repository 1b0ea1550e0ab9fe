using Microsoft.Extensions.Logging;

namespace KvmSharp.Devices.Virtio.Transport;

/// <summary>Log messages of the virtio-pci transport.</summary>
internal static partial class VirtioPciLog
{
    [LoggerMessage(Level = LogLevel.Warning, Message = "virtio-pci {Function}: device needs reset: {Reason}")]
    public static partial void NeedsReset(ILogger logger, string function, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "virtio-pci {Function}: driver OK, features 0x{Features:x}, activating")]
    public static partial void Activating(ILogger logger, string function, ulong features);

    [LoggerMessage(Level = LogLevel.Error, Message = "virtio-pci {Function}: the device failed to activate; marked as needing a reset")]
    public static partial void ActivationFailed(ILogger logger, string function, Exception exception);

    [LoggerMessage(Level = LogLevel.Debug, Message = "virtio-pci {Function}: reset by the driver")]
    public static partial void Reset(ILogger logger, string function);

    [LoggerMessage(Level = LogLevel.Information, Message = "virtio-pci {Function}: the driver accepted features 0x{Accepted:x} beyond or without VERSION_1 of the offered 0x{Offered:x}; FEATURES_OK refused")]
    public static partial void FeaturesRefused(ILogger logger, string function, ulong accepted, ulong offered);

    [LoggerMessage(Level = LogLevel.Warning, Message = "virtio-pci {Function}: the host refused the doorbell of queue {Queue} at 0x{Address:x}; its kicks go through MMIO exits")]
    public static partial void DoorbellRefused(ILogger logger, string function, int queue, ulong address, Exception exception);
}
