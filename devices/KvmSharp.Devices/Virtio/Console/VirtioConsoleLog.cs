using Microsoft.Extensions.Logging;

namespace KvmSharp.Devices.Virtio.Console;

/// <summary>virtio-console's log messages.</summary>
internal static partial class VirtioConsoleLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Warning, Message = "virtio-console: device needs reset: {Reason}")]
    public static partial void NeedsReset(ILogger logger, string reason);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "virtio-console: activated, multiport {Multiport}, {Ports} ports")]
    public static partial void Activated(ILogger logger, bool multiport, int ports);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "virtio-console: control message from the driver: port {Port}, event {Event}, value {Value}")]
    public static partial void ControlFromDriver(ILogger logger, uint port, VirtioConsoleControlEvent @event, ushort value);
}
