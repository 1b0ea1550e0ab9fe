using Microsoft.Extensions.Logging;

namespace KvmSharp.Devices.Virtio.Rng;

/// <summary>virtio-rng's log messages.</summary>
internal static partial class VirtioRngLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Warning, Message = "virtio-rng: device needs reset: {Reason}")]
    public static partial void NeedsReset(ILogger logger, string reason);

    [LoggerMessage(EventId = 2, Level = LogLevel.Error, Message = "virtio-rng: getrandom failed; the request is returned empty")]
    public static partial void GetRandomFailed(ILogger logger);
}
