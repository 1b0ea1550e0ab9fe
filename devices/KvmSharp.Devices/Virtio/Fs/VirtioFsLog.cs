using Microsoft.Extensions.Logging;

namespace KvmSharp.Devices.Virtio.Fs;

/// <summary>virtio-fs and virtiofsd log messages.</summary>
internal static partial class VirtioFsLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "virtio-fs '{Tag}': virtiofsd started (pid {Pid}): {Command}")]
    public static partial void BackendStarted(ILogger logger, string tag, int pid, string command);

    [LoggerMessage(EventId = 2, Level = LogLevel.Debug, Message = "virtiofsd '{Tag}': {Line}")]
    public static partial void BackendOutput(ILogger logger, string tag, string line);

    [LoggerMessage(EventId = 3, Level = LogLevel.Error, Message = "{Message}")]
    public static partial void BackendExited(ILogger logger, string message);

    [LoggerMessage(EventId = 4, Level = LogLevel.Debug, Message = "virtio-fs '{Tag}': handed {Queues} queue(s) and {Regions} memory region(s) to virtiofsd, features 0x{Features:x}")]
    public static partial void Started(ILogger logger, string tag, int queues, int regions, ulong features);

    [LoggerMessage(EventId = 5, Level = LogLevel.Warning, Message = "virtio-fs '{Tag}': stopping ring {Queue} failed")]
    public static partial void StopFailed(ILogger logger, string tag, int queue, Exception exception);

    [LoggerMessage(EventId = 6, Level = LogLevel.Warning, Message = "virtio-fs '{Tag}': device needs reset: {Reason}")]
    public static partial void NeedsReset(ILogger logger, string tag, string reason);
}
