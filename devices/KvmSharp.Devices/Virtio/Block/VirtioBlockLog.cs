using Microsoft.Extensions.Logging;

namespace KvmSharp.Devices.Virtio.Block;

/// <summary>virtio-blk's log messages.</summary>
internal static partial class VirtioBlockLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "virtio-blk {Drive}: activated, {CapacitySectors} sectors, features 0x{Features:x}, {Workers} I/O workers")]
    public static partial void Activated(ILogger logger, string drive, ulong capacitySectors, ulong features, int workers);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "virtio-blk {Drive}: device needs reset: {Reason}")]
    public static partial void NeedsReset(ILogger logger, string drive, string reason);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "virtio-blk {Drive}: reset; {Abandoned} queued requests abandoned, waited for {InFlight} in flight")]
    public static partial void Reset(ILogger logger, string drive, int abandoned, int inFlight);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "virtio-blk {Drive}: host I/O failed: {Error} (errno {Errno}); the guest sees VIRTIO_BLK_S_IOERR ({Count} such failures so far)")]
    public static partial void HostIoFailed(ILogger logger, string drive, string error, int errno, long count);
}
