using System.Net.Sockets;
using System.Text;

namespace KvmSharp.Systemd;

/// <summary>
/// The service manager's notification socket, as sd_notify(3) uses it: each message is one datagram of
/// newline-separated VARIABLE=value assignments sent to the AF_UNIX SOCK_DGRAM address in
/// <c>$NOTIFY_SOCKET</c> (a path, or an abstract name written with a leading '@').
/// </summary>
/// <remarks>
/// Present whenever NOTIFY_SOCKET is set, whoever the parent is (systemd, a container runtime, a test), not
/// only under a parent named systemd. Sends never block the caller for long and never throw: a manager that
/// went away must not take the VM with it; the first failure is reported through <see cref="SendFailed"/>.
/// </remarks>
public sealed class SystemdNotifySocket : IDisposable
{
    public const string NotifySocketVariable = "NOTIFY_SOCKET";

    private readonly Socket _socket;
    private readonly UnixDomainSocketEndPoint _destination;
    private readonly Lock _gate = new();
    private int _failures;

    private SystemdNotifySocket(string address, UnixDomainSocketEndPoint destination)
    {
        Address = address;
        _destination = destination;
        _socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified) { SendTimeout = 1000 };
    }

    /// <summary>The address as NOTIFY_SOCKET gave it ("/run/systemd/notify", "@abstract").</summary>
    public string Address { get; }

    /// <summary>Sends that failed (the manager's socket is gone or full); the first raises <see cref="SendFailed"/>.</summary>
    public int Failures => Volatile.Read(ref _failures);

    /// <summary>Raised on the first send that fails, with what failed; later failures only count.</summary>
    public event Action<string>? SendFailed;

    /// <summary>
    /// The socket NOTIFY_SOCKET names, or null when it is unset or empty. Throws <see cref="ArgumentException"/>
    /// for an address this process cannot use (a relative path, vsock:), naming the variable and the value.
    /// </summary>
    public static SystemdNotifySocket? FromEnvironment() => Open(Environment.GetEnvironmentVariable(NotifySocketVariable));

    /// <summary>The socket at <paramref name="address"/> (NOTIFY_SOCKET's syntax), or null for null or empty.</summary>
    public static SystemdNotifySocket? Open(string? address)
    {
        if (string.IsNullOrEmpty(address)) return null;
        return new SystemdNotifySocket(address, ToEndPoint(address));
    }

    /// <summary>NOTIFY_SOCKET's syntax: an absolute path, or '@' for the abstract namespace (a leading NUL byte).</summary>
    internal static UnixDomainSocketEndPoint ToEndPoint(string address)
    {
        if (address[0] == '@')
        {
            if (address.Length == 1) throw new ArgumentException($"{NotifySocketVariable}='@' names no abstract socket: give a name after '@'");
            return new UnixDomainSocketEndPoint("\0" + address[1..]);
        }
        if (address[0] != '/')
            throw new ArgumentException($"{NotifySocketVariable}='{address}' is not an absolute path or an '@' abstract name (the only AF_UNIX forms; vsock: is not supported)");
        return new UnixDomainSocketEndPoint(address);
    }

    /// <summary>Send one message ("READY=1\nSTATUS=running"): one datagram. False when it could not be sent.</summary>
    public bool Send(string message)
    {
        ArgumentNullException.ThrowIfNull(message);
        byte[] datagram = Encoding.UTF8.GetBytes(message);
        string? failure = null;
        lock (_gate)
        {
            try
            {
                _socket.SendTo(datagram, SocketFlags.None, _destination);
                return true;
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                if (Interlocked.Increment(ref _failures) == 1)
                    failure = $"sending '{FirstLine(message)}' to {NotifySocketVariable}={Address} failed: {e.Message}" +
                              (e is SocketException s ? $" ({s.SocketErrorCode}, sendto)" : "");
            }
        }
        if (failure is not null) SendFailed?.Invoke(failure);
        return false;
    }

    private static string FirstLine(string message)
    {
        int end = message.IndexOf('\n');
        return end < 0 ? message : message[..end];
    }

    public void Dispose()
    {
        lock (_gate) _socket.Dispose();
    }
}
