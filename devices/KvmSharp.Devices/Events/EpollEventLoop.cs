using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Devices.Events;

/// <summary>
/// The VM's I/O thread: one named thread waiting in epoll_wait on every watched descriptor, plus an
/// eventfd that <see cref="Post"/> signals to wake it. Descriptors are level-triggered: a callback
/// must drain its descriptor (e.g. <see cref="EventFd.TryConsume"/>) or it is called again. A callback
/// that throws is logged and the loop goes on. <see cref="Dispose"/> stops the thread and joins it.
/// </summary>
public sealed unsafe partial class EpollEventLoop : IEventLoop, IDisposable
{
    private const int MaxEventsPerWait = 64;
    private const ulong WakeToken = 0;

    private readonly ILogger<EpollEventLoop> _logger;
    private readonly FileDescriptorHandle _epoll;
    private readonly EventFd _wake;
    private readonly ConcurrentQueue<Action> _posted = new();
    private readonly Thread _thread;
    private readonly Lock _watchLock = new();
    private ImmutableDictionary<ulong, Registration> _watches = ImmutableDictionary<ulong, Registration>.Empty;
    private ulong _nextToken = WakeToken + 1;
    private volatile bool _stopping;
    private int _disposed;

    /// <param name="threadName">The loop thread's name, as shown by top -H and in dumps (e.g. "vm-io").</param>
    public EpollEventLoop(ILogger<EpollEventLoop> logger, string threadName = "kvmsharp-io")
    {
        _logger = logger;
        int epoll = epoll_create1(EPOLL_CLOEXEC);
        if (epoll < 0) throw new HostCallException("epoll_create1", errno);
        _epoll = new FileDescriptorHandle(epoll);
        try
        {
            _wake = EventFd.Create();
            Add(_wake, WakeToken);
        }
        catch
        {
            _wake?.Dispose();
            _epoll.Dispose();
            throw;
        }
        _thread = new Thread(Run) { Name = threadName, IsBackground = true };
        _thread.Start();
    }

    /// <summary>True on the loop's own thread.</summary>
    public bool IsLoopThread => Thread.CurrentThread == _thread;

    /// <summary>Callbacks that threw since the loop started.</summary>
    public long CallbackFaults => Interlocked.Read(ref _callbackFaults);
    private long _callbackFaults;

    public void Post(Action work)
    {
        ArgumentNullException.ThrowIfNull(work);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        _posted.Enqueue(work);
        _wake.Signal();
    }

    public IDisposable Watch(SafeHandle fd, Action onReadable)
    {
        ArgumentNullException.ThrowIfNull(fd);
        ArgumentNullException.ThrowIfNull(onReadable);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        bool added = false;
        fd.DangerousAddRef(ref added); // released when the watch ends: the descriptor cannot be closed and reused under epoll
        try
        {
            Registration registration;
            lock (_watchLock)
            {
                registration = new Registration(this, _nextToken++, fd, onReadable);
                _watches = _watches.Add(registration.Token, registration);
            }
            try
            {
                Add(fd, registration.Token);
            }
            catch
            {
                lock (_watchLock) _watches = _watches.Remove(registration.Token);
                throw;
            }
            return registration;
        }
        catch
        {
            fd.DangerousRelease();
            throw;
        }
    }

    private void Add(SafeHandle fd, ulong token)
    {
        var registration = new epoll_event { events = EPOLLIN };
        registration.data.u64 = token;
        if (epoll_ctl((int)_epoll.DangerousGetHandle(), EPOLL_CTL_ADD, (int)fd.DangerousGetHandle(), &registration) != 0)
            throw new HostCallException("epoll_ctl", errno, $"EPOLL_CTL_ADD fd {fd.DangerousGetHandle()}");
    }

    private void Remove(Registration registration)
    {
        lock (_watchLock)
        {
            if (!_watches.ContainsKey(registration.Token)) return;
            _watches = _watches.Remove(registration.Token);
        }
        if (!_epoll.IsClosed)
        {
            var ignored = new epoll_event();
            epoll_ctl((int)_epoll.DangerousGetHandle(), EPOLL_CTL_DEL, (int)registration.Fd.DangerousGetHandle(), &ignored);
        }
        registration.Fd.DangerousRelease();
    }

    private void Run()
    {
        var events = stackalloc epoll_event[MaxEventsPerWait];
        while (!_stopping)
        {
            int count = epoll_wait((int)_epoll.DangerousGetHandle(), events, MaxEventsPerWait, -1);
            if (count < 0)
            {
                int error = errno;
                if (error == EINTR) continue;
                LogWaitFailed(_logger, error);
                return;
            }
            for (int i = 0; i < count && !_stopping; i++)
            {
                ulong token = events[i].data.u64;
                if (token == WakeToken)
                {
                    _wake.TryConsume(out _);
                    RunPosted();
                    continue;
                }
                // A watch disposed earlier in this batch is gone from the map: its event is dropped.
                if (Volatile.Read(ref _watches).TryGetValue(token, out var registration)) Invoke(registration.Callback, "watch");
            }
        }
    }

    private void RunPosted()
    {
        while (!_stopping && _posted.TryDequeue(out var work)) Invoke(work, "posted work");
    }

    private void Invoke(Action callback, string kind)
    {
        try
        {
            callback();
        }
        catch (Exception e)
        {
            Interlocked.Increment(ref _callbackFaults);
            LogCallbackFailed(_logger, e, kind, _thread.Name);
        }
    }

    /// <summary>Stop the loop and join its thread (unless called from it); watches end and their descriptors are released.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _stopping = true;
        _wake.Signal();
        if (!IsLoopThread) _thread.Join();
        foreach (var registration in Volatile.Read(ref _watches).Values) Remove(registration);
        _epoll.Dispose();
        _wake.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "I/O loop {ThreadName}: a {Kind} callback threw; the loop goes on")]
    private static partial void LogCallbackFailed(ILogger logger, Exception exception, string kind, string? threadName);

    [LoggerMessage(Level = LogLevel.Critical, Message = "I/O loop: epoll_wait failed with errno {Errno}; the loop stops")]
    private static partial void LogWaitFailed(ILogger logger, int errno);

    private sealed class Registration(EpollEventLoop loop, ulong token, SafeHandle fd, Action callback) : IDisposable
    {
        public readonly ulong Token = token;
        public readonly SafeHandle Fd = fd;
        public readonly Action Callback = callback;

        public void Dispose() => loop.Remove(this);
    }
}
