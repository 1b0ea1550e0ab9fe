using System.Diagnostics;
using System.Net.Sockets;
using System.Text;

namespace KvmSharp.Tests.Integration.Infrastructure;

/// <summary>
/// The service manager's side of sd_notify(3) for tests: a real AF_UNIX SOCK_DGRAM socket bound to an abstract
/// name (or a path), whose <see cref="Address"/> goes into NOTIFY_SOCKET. Every datagram received is kept, with
/// the time it arrived.
/// </summary>
public sealed class NotifyListener : IDisposable
{
    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
    private readonly List<(TimeSpan At, string Message)> _messages = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Thread _reader;
    private readonly string? _path;
    private volatile bool _disposed;

    /// <param name="path">Bind to this file; an abstract name (NOTIFY_SOCKET '@...') when null.</param>
    public NotifyListener(string? path = null)
    {
        _path = path;
        if (path is null)
        {
            string name = $"kvmsharp-notify-test-{Environment.ProcessId}-{Guid.NewGuid():N}";
            _socket.Bind(new UnixDomainSocketEndPoint("\0" + name));
            Address = "@" + name;
        }
        else
        {
            _socket.Bind(new UnixDomainSocketEndPoint(path));
            Address = path;
        }
        _socket.ReceiveTimeout = 100;
        _reader = new Thread(Read) { IsBackground = true, Name = "notify-listener" };
        _reader.Start();
    }

    /// <summary>NOTIFY_SOCKET's value for this socket.</summary>
    public string Address { get; }

    /// <summary>Every message so far, in order of arrival.</summary>
    public IReadOnlyList<(TimeSpan At, string Message)> Messages
    {
        get { lock (_messages) return _messages.ToList(); }
    }

    /// <summary>Every assignment so far ("READY=1", "STATUS=running VM ..."), one message split at its newlines.</summary>
    public IReadOnlyList<(TimeSpan At, string Assignment)> Assignments =>
        Messages.SelectMany(m => m.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(a => (m.At, a))).ToList();

    /// <summary>Time since the listener was made (the clock <see cref="Messages"/> are stamped with).</summary>
    public TimeSpan Now => _clock.Elapsed;

    /// <summary>Wait until an assignment matching <paramref name="match"/> arrived; false after <paramref name="timeout"/>.</summary>
    public bool WaitFor(Func<string, bool> match, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        lock (_messages)
        {
            while (true)
            {
                if (_messages.Any(m => m.Message.Split('\n').Any(match))) return true;
                var left = timeout - deadline.Elapsed;
                if (left <= TimeSpan.Zero) return false;
                Monitor.Wait(_messages, left);
            }
        }
    }

    /// <summary>A readable account of what arrived, for assertion messages.</summary>
    public string Describe() => string.Join("\n", Messages.Select(m => $"{m.At.TotalSeconds,8:0.000} {m.Message.Replace("\n", "\\n")}"));

    private void Read()
    {
        var buffer = new byte[4096];
        while (true)
        {
            int length;
            try
            {
                length = _socket.Receive(buffer);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut && !_disposed)
            {
                continue; // a blocked receive is not woken by closing the socket: poll for Dispose
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return;
            }
            lock (_messages)
            {
                _messages.Add((_clock.Elapsed, Encoding.UTF8.GetString(buffer, 0, length)));
                Monitor.PulseAll(_messages);
            }
        }
    }

    public void Dispose()
    {
        _disposed = true;
        _reader.Join();
        _socket.Dispose();
        if (_path is not null) File.Delete(_path);
    }
}
