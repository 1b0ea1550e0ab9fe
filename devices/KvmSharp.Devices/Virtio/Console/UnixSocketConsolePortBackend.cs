using System.Net.Sockets;
using KvmSharp.Devices.Serial;

namespace KvmSharp.Devices.Virtio.Console;

/// <summary>
/// A port served on a unix socket: it listens on the path and connects one client at a time both ways
/// (a second client is refused while one is connected). The client's bytes go to the guest; the
/// guest's bytes go to the client without blocking the device (when the client does not read, they
/// are dropped and counted). The guest sees PORT_OPEN follow the client's connection.
/// </summary>
public sealed class UnixSocketConsolePortBackend : IConsolePortBackend
{
    private readonly string _portName;
    private readonly string _path;
    private readonly Socket _listener;
    private readonly object _gate = new();
    private Socket? _client;
    // The client's side of the guest output: a writer thread of its own, so a client that does not read never blocks the device.
    private StreamSerialSink? _output;
    private long _droppedBefore;
    private Thread? _acceptor;
    private Action<ReadOnlyMemory<byte>>? _input;
    private Action<bool>? _connectionChanged;
    private long _dropped;
    private bool _disposed;

    private UnixSocketConsolePortBackend(string portName, string path, Socket listener)
    {
        _portName = portName;
        _path = path;
        _listener = listener;
    }

    public bool IsConnected
    {
        get
        {
            lock (_gate)
            {
                return _client is not null;
            }
        }
    }

    /// <summary>Guest bytes lost because no client was connected or it did not read.</summary>
    public long DroppedBytes
    {
        get
        {
            lock (_gate)
            {
                return _dropped + _droppedBefore + (_output?.DroppedBytes ?? 0);
            }
        }
    }

    /// <summary>Listen on <paramref name="path"/> (a stale socket file there is replaced; any other file is refused). Throws <see cref="IOException"/> naming the port.</summary>
    public static UnixSocketConsolePortBackend Listen(string portName, string path)
    {
        if (IsSocket(path))
        {
            // A socket left behind by an earlier run; nobody can be listening on it through this path any more once replaced.
            File.Delete(path);
        }
        else if (File.Exists(path) || Directory.Exists(path))
        {
            throw new IOException($"--port name={portName}: socket={path} exists and is not a socket; remove it or give another path");
        }

        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen(1);
        }
        catch (SocketException e)
        {
            listener.Dispose();
            throw new IOException($"--port name={portName}: cannot listen on socket={path}: {e.Message}; give a path in a writable directory", e);
        }

        return new UnixSocketConsolePortBackend(portName, path, listener);
    }

    private static unsafe bool IsSocket(string path)
    {
        Tmds.Linux.stat status;
        fixed (byte* p = System.Text.Encoding.UTF8.GetBytes(path + "\0"))
        {
            return Tmds.Linux.LibC.lstat(p, &status) == 0 && (status.st_mode & 0xF000) == 0xC000;
        }
    }

    public void Start(Action<ReadOnlyMemory<byte>> input, Action<bool> connectionChanged)
    {
        lock (_gate)
        {
            _input = input;
            _connectionChanged = connectionChanged;
            _acceptor ??= new Thread(AcceptLoop) { IsBackground = true, Name = $"virtio-port-{_portName}" };
            if (!_acceptor.IsAlive)
            {
                _acceptor.Start();
            }
        }
    }

    public void Write(ReadOnlySpan<byte> data)
    {
        lock (_gate)
        {
            if (_output is null)
            {
                _dropped += data.Length;
                return;
            }

            foreach (byte value in data)
            {
                _output.Write(value);
            }
        }
    }

    private void AcceptLoop()
    {
        var buffer = new byte[4096];
        while (true)
        {
            Socket client;
            try
            {
                client = _listener.Accept();
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return; // disposed
            }

            lock (_gate)
            {
                if (_disposed)
                {
                    client.Dispose();
                    return;
                }

                _client = client;
                _output = new StreamSerialSink(new NetworkStream(client, ownsSocket: false), leaveOpen: false, maxFlushDelay: TimeSpan.FromMilliseconds(20));
            }

            _connectionChanged?.Invoke(true);
            try
            {
                while (true)
                {
                    int read = client.Receive(buffer);
                    if (read == 0)
                    {
                        break;
                    }

                    // The device copies the bytes before this returns, so the buffer can be reused.
                    _input?.Invoke(buffer.AsMemory(0, read));
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // The client left or the port closed.
            }

            StreamSerialSink? output;
            lock (_gate)
            {
                _client = null;
                output = _output;
                _output = null;
                _droppedBefore += output?.DroppedBytes ?? 0;
            }

            output?.Dispose();
            client.Dispose();
            _connectionChanged?.Invoke(false);
        }
    }

    public void Dispose()
    {
        Socket? client;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            client = _client;
        }

        _output?.Dispose();
        _listener.Dispose();
        client?.Dispose();
        try
        {
            File.Delete(_path);
        }
        catch (IOException)
        {
            // Someone else's now; leave it.
        }
    }
}
