using Microsoft.Extensions.Logging;

namespace KvmSharp.Devices.Virtio.Net;

/// <summary>virtio-net's log messages.</summary>
internal static partial class VirtioNetLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "virtio-net {Nic}: activated on tap {Tap}, MAC {Mac}, features 0x{Features:x}, tap offloads 0x{Offloads:x}")]
    public static partial void Activated(ILogger logger, string nic, string tap, string mac, ulong features, uint offloads);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "virtio-net {Nic}: device needs reset: {Reason}")]
    public static partial void NeedsReset(ILogger logger, string nic, string reason);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "virtio-net {Nic}: TUNSETOFFLOAD 0x{Offloads:x} failed (errno {Errno}); the tap keeps delivering complete frames")]
    public static partial void OffloadFailed(ILogger logger, string nic, uint offloads, int errno);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "virtio-net {Nic}: tap {Direction} failed with errno {Errno}; the frame is dropped ({Count} such drops so far)")]
    public static partial void TransferFailed(ILogger logger, string nic, string direction, int errno, long count);

    [LoggerMessage(EventId = 5, Level = LogLevel.Debug, Message = "virtio-net {Nic}: dropped a {Length}-byte frame: {Reason}")]
    public static partial void Dropped(ILogger logger, string nic, int length, string reason);
}
