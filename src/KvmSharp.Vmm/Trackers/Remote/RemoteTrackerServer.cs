using System.Text;
using KvmSharp.Devices.Events;
using KvmSharp.Vmm.Machine;
using static Tmds.Linux.LibC;

namespace KvmSharp.Vmm.Trackers.Remote;

/// <summary>
/// Serves page trackers in other processes on a Unix socket (docs/tracker-protocol.md): each connection
/// gets the guest memory table and its memfds, subscribes (synchronous or asynchronous), adds and removes
/// gfns, and receives events through a shared-memory ring. Connections from another uid than the VMM's
/// (root excepted) are refused. One per VM; disposing it detaches every tracker (with the grace period).
/// </summary>
public sealed class RemoteTrackerServer : IDisposable
{
    private readonly TrackerSocket _listener;
    private readonly Thread _acceptThread;
    private readonly List<RemoteTrackerSession> _sessions = new();
    private readonly List<string> _detachments = new();
    private readonly object _gate = new();
    private volatile bool _disposing;

    private RemoteTrackerServer(VirtualMachine machine, string path, RemoteTrackerOptions options)
    {
        Machine = machine;
        Path = path;
        Options = options;
        _ = GuestMemoryTable.Of(machine); // refuse now, not at the first connection, when RAM cannot be shared
        _listener = TrackerSocket.Listen(path);
        _acceptThread = new Thread(AcceptLoop) { IsBackground = true, Name = "tracker-accept" };
    }

    /// <summary>Listen at <paramref name="path"/> (mode 0600) for trackers of <paramref name="machine"/>, whose RAM must be memfd-backed.</summary>
    public static RemoteTrackerServer Start(VirtualMachine machine, string path, RemoteTrackerOptions? options = null, Action<string>? log = null, Action<string, string?>? publish = null)
    {
        var server = new RemoteTrackerServer(machine, path, options ?? new RemoteTrackerOptions()) { Log = log, Publish = publish };
        server._acceptThread.Start();
        return server;
    }

    public VirtualMachine Machine { get; }
    public string Path { get; }
    public RemoteTrackerOptions Options { get; }

    /// <summary>Where refusals and failures are logged.</summary>
    public Action<string>? Log { get; set; }

    /// <summary>
    /// The lifecycle hook: called with ("tracker-attached" | "tracker-detached", detail) on a thread that is
    /// not a vCPU's. The host wires it to IVmController.Publish.
    /// </summary>
    public Action<string, string?>? Publish { get; set; }

    /// <summary>Trackers subscribed now.</summary>
    public int Attached
    {
        get { lock (_gate) return _sessions.Count(s => s.Subscribed); }
    }

    /// <summary>Every detachment so far, with its reason, in order.</summary>
    public IReadOnlyList<string> Detachments
    {
        get { lock (_gate) return _detachments.ToList(); }
    }

    /// <summary>Raised after a tracker subscribed (argument: its description).</summary>
    public event Action<string>? TrackerAttached;

    /// <summary>Raised after a tracker was detached and its counts taken back (argument: its description and why).</summary>
    public event Action<string>? TrackerDetached;

    internal bool Disposing => _disposing;

    private void AcceptLoop()
    {
        uint self = geteuid();
        while (!_disposing)
        {
            TrackerSocket? client;
            try
            {
                client = _listener.Accept(200);
            }
            catch (Exception e) when (e is HostCallException)
            {
                Log?.Invoke($"tracker socket {Path}: accept failed: {e.Message}");
                continue;
            }
            if (client is null) continue;
            try
            {
                var (uid, pid) = client.PeerCredentials();
                if (uid != self && uid != 0)
                {
                    Log?.Invoke($"tracker socket {Path}: refused a connection from uid {uid} (pid {pid}): only uid {self} and root may track this VM");
                    Refuse(client, EACCES, $"uid {uid} may not track this VM (only uid {self} and root)");
                    continue;
                }
                RemoteTrackerSession session;
                lock (_gate)
                {
                    if (_disposing || _sessions.Count >= Options.MaxTrackers)
                    {
                        Refuse(client, EBUSY, $"{Options.MaxTrackers} trackers are connected already");
                        continue;
                    }
                    session = new RemoteTrackerSession(this, client, Machine.PageTracker, pid);
                    _sessions.Add(session);
                }
                session.Start();
            }
            catch (Exception e) when (e is HostCallException or InvalidOperationException)
            {
                Log?.Invoke($"tracker socket {Path}: {e.Message}");
                client.Dispose();
            }
        }
    }

    private const int EACCES = 13, EBUSY = 16;

    private static void Refuse(TrackerSocket client, int error, string detail)
    {
        try
        {
            byte[] text = Encoding.UTF8.GetBytes(detail);
            var payload = new byte[8 + text.Length];
            BitConverter.TryWriteBytes(payload, error);
            BitConverter.TryWriteBytes(payload.AsSpan(4), (uint)text.Length);
            text.CopyTo(payload, 8);
            client.Send(TrackerWire.Detached, 0, payload);
        }
        catch (HostCallException)
        {
        }
        client.Dispose();
    }

    internal void OnAttached(RemoteTrackerSession session, string detail)
    {
        Log?.Invoke($"tracker attached: {detail}");
        Publish?.Invoke(Lifecycle.VmEventKind.TrackerAttached, detail);
        TrackerAttached?.Invoke(detail);
    }

    internal void OnDetached(RemoteTrackerSession session, string reason)
    {
        string detail = $"{session.Name}: {reason}";
        bool wasSubscribed = session.Subscribed;
        lock (_gate)
        {
            _sessions.Remove(session);
            if (wasSubscribed) _detachments.Add(detail);
        }
        if (!wasSubscribed) return;
        Log?.Invoke($"tracker detached: {detail}");
        Publish?.Invoke(Lifecycle.VmEventKind.TrackerDetached, detail);
        TrackerDetached?.Invoke(detail);
    }

    /// <summary>Detach every tracker, each with the unregister grace period, and stop listening.</summary>
    public void Dispose()
    {
        if (_disposing) return;
        _disposing = true;
        _acceptThread.Join();
        List<RemoteTrackerSession> sessions;
        lock (_gate) sessions = _sessions.ToList();
        foreach (var session in sessions) session.BeginDetach("the VM ended");
        foreach (var session in sessions) session.Join(TimeSpan.FromSeconds(15));
        _listener.Dispose();
        try { File.Delete(Path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
