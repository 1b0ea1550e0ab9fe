namespace KvmSharp.Devices.VhostUser;

/// <summary>
/// A vhost-user exchange failed: a host call (errno set, as the KvmException family carries it) or the
/// back end broke the protocol or refused a request (errno 0). The message names the request.
/// </summary>
public sealed class VhostUserException(string operation, int errno, string detail)
    : IOException(errno != 0 ? $"vhost-user {operation} failed: errno {errno}: {detail}" : $"vhost-user {operation}: {detail}")
{
    /// <summary>The request or syscall that failed, e.g. "SET_MEM_TABLE" or "connect".</summary>
    public string Operation { get; } = operation;

    /// <summary>The Linux errno, or 0 for a protocol error.</summary>
    public int Errno { get; } = errno;
}
