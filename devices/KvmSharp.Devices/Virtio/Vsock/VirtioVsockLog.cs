using Microsoft.Extensions.Logging;

namespace KvmSharp.Devices.Virtio.Vsock;

/// <summary>virtio-vsock's log messages.</summary>
internal static partial class VirtioVsockLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Warning, Message = "virtio-vsock: device needs reset: {Reason}")]
    public static partial void NeedsReset(ILogger logger, string reason);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "virtio-vsock: guest cid {Cid}, listening on {Path} (guest connections to port P go to {Path}_P)")]
    public static partial void Listening(ILogger logger, ulong cid, string path);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "virtio-vsock: guest connection to host port {Port} refused: connect({Path}) failed with errno {Errno}")]
    public static partial void GuestConnectRefused(ILogger logger, uint port, string path, int errno);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "virtio-vsock: the guest sent {Bytes} bytes on host port {HostPort} / guest port {GuestPort} beyond the credit it was given; the connection is reset")]
    public static partial void CreditViolated(ILogger logger, uint bytes, uint hostPort, uint guestPort);

    [LoggerMessage(EventId = 5, Level = LogLevel.Warning, Message = "virtio-vsock: {Count} connections are open, the most allowed; a new one is refused")]
    public static partial void TooManyConnections(ILogger logger, int count);

    [LoggerMessage(EventId = 6, Level = LogLevel.Debug, Message = "virtio-vsock: host client refused: {Reason}")]
    public static partial void HostClientRefused(ILogger logger, string reason);

    [LoggerMessage(EventId = 7, Level = LogLevel.Warning, Message = "virtio-vsock: epoll_ctl on a connection failed with errno {Errno}; the connection is reset")]
    public static partial void EpollFailed(ILogger logger, int errno);
}
