namespace KvmSharp.Devices.Events;

/// <summary>A host call a device back end made failed (eventfd, epoll...): the call's name and errno, as the KvmException family carries them.</summary>
public sealed class HostCallException(string operation, int errno, string? detail = null)
    : IOException($"{operation} failed: errno {errno}{(detail is null ? "" : ": " + detail)}")
{
    /// <summary>The syscall that failed, e.g. "epoll_ctl".</summary>
    public string Operation { get; } = operation;

    /// <summary>The Linux errno it returned.</summary>
    public int Errno { get; } = errno;
}
