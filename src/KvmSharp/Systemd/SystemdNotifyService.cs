using KvmSharp.Hosting;
using KvmSharp.Vmm.Lifecycle;
using KvmSharp.Vmm.Machine;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace KvmSharp.Systemd;

/// <summary>
/// Tells the service manager (NOTIFY_SOCKET) what the VM is doing: READY=1 once the VM runs (or once the API
/// listens, with <see cref="SystemdReadiness.WhenHostStarts"/>), STATUS= for booting, running, paused, stopping and
/// the reason it ended, STOPPING=1 when the host stops, and WATCHDOG=1 every WATCHDOG_USEC/2 while the VM's
/// vCPU threads and event loop make progress (<see cref="IVmController.CheckProgress"/>). A wedged thread stops
/// the pings, so systemd's WatchdogSec= restarts the service; the log says which thread and for how long.
/// </summary>
/// <remarks>
/// It follows <see cref="ActiveVm"/>: the controller current now, and the next one after a reboot with
/// --on-reboot restart. The first VM may be running before the host (and this service) starts, so it looks at
/// the current controller when it starts as well as listening for the next.
/// </remarks>
public sealed partial class SystemdNotifyService : IHostedService, IDisposable
{
    private static readonly VmProgress Healthy = new([]);
    // System.Threading.Timer's longest period; a longer watchdog is pinged at this rate, which is harmless.
    private static readonly TimeSpan LongestTimerPeriod = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    private readonly SystemdNotifySocket _socket;
    private readonly SystemdWatchdog? _watchdog;
    private readonly SystemdReadiness _readiness;
    private readonly ActiveVm? _activeVm;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly ILogger<SystemdNotifyService> _logger;
    private readonly Lock _gate = new();
    private readonly List<CancellationTokenRegistration> _registrations = new();
    private IVmController? _controller;
    private IDisposable? _subscription;
    private Timer? _watchdogTimer;
    private int _ticking;
    private bool _ready;
    private bool _stopping;
    private bool _stalled;
    private string _status = "";
    private long _pings;

    public SystemdNotifyService(SystemdNotifySocket socket, SystemdWatchdog? watchdog, SystemdReadiness readiness,
        ActiveVm? activeVm, IHostApplicationLifetime lifetime, ILogger<SystemdNotifyService> logger)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentNullException.ThrowIfNull(lifetime);
        ArgumentNullException.ThrowIfNull(logger);
        _socket = socket;
        _watchdog = watchdog;
        _readiness = readiness;
        _activeVm = activeVm;
        _lifetime = lifetime;
        _logger = logger;
    }

    /// <summary>WATCHDOG=1 pings sent so far.</summary>
    public long Pings => Interlocked.Read(ref _pings);

    /// <summary>The last STATUS= sent.</summary>
    public string Status
    {
        get { lock (_gate) return _status; }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _socket.SendFailed += LogSendFailed;
        _registrations.Add(_lifetime.ApplicationStarted.Register(OnHostStarted));
        _registrations.Add(_lifetime.ApplicationStopping.Register(OnHostStopping));
        if (_activeVm is not null)
        {
            _activeVm.Attached += OnAttached;
            _activeVm.Detached += OnDetached;
            if (_activeVm.Current is { } current) OnAttached(current);
        }
        if (_watchdog is { } watchdog)
        {
            var period = watchdog.PingInterval < LongestTimerPeriod ? watchdog.PingInterval : LongestTimerPeriod;
            LogWatchdog(watchdog.Timeout.TotalSeconds, period.TotalSeconds, watchdog.StallThreshold.TotalSeconds);
            _watchdogTimer = new Timer(_ => WatchdogTick(), null, TimeSpan.Zero, period);
        }
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        // The host's last hosted services stop before this one; once it stops, the process ends.
        _watchdogTimer?.Dispose();
        _watchdogTimer = null;
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        _watchdogTimer?.Dispose();
        foreach (var registration in _registrations) registration.Dispose();
        if (_activeVm is not null)
        {
            _activeVm.Attached -= OnAttached;
            _activeVm.Detached -= OnDetached;
        }
        lock (_gate)
        {
            _subscription?.Dispose();
            _subscription = null;
        }
        _socket.SendFailed -= LogSendFailed;
    }

    private void OnHostStarted()
    {
        if (_readiness == SystemdReadiness.WhenHostStarts)
        {
            lock (_gate)
            {
                if (_controller is null) SetStatus("waiting for InstanceStart on the API socket");
                BecomeReady();
            }
        }
        else if (_activeVm is null)
        {
            // No VM to follow (a host without a controller): the host started is all there is to report.
            lock (_gate) BecomeReady();
        }
    }

    private void OnHostStopping()
    {
        lock (_gate)
        {
            _stopping = true;
            _status = "stopping";
            _socket.Send("STOPPING=1\nSTATUS=stopping");
        }
    }

    private void OnAttached(IVmController controller)
    {
        lock (_gate)
        {
            if (_controller == controller) return;
            _subscription?.Dispose(); // the previous VM's (kept past its detach for a late "started")
            _controller = controller;
            SetStatus($"booting VM {controller.Id}");
            _subscription = controller.Subscribe(e => OnEvent(controller, e));
            // Events go to subscribers from now on: a VM that is already running (the first VM starts before the
            // host) said "started" before anyone listened.
            if (controller.State == VmState.Running) OnRunning(controller);
            else if (controller.State == VmState.Paused) SetStatus($"paused VM {controller.Id}");
        }
    }

    private void OnDetached(IVmController controller)
    {
        lock (_gate)
        {
            if (_controller != controller) return;
            _controller = null;
            var ended = controller.Completion;
            SetStatus(ended.IsCompletedSuccessfully ? $"ended: {ended.Result.Summary}" : $"ended: VM {controller.Id} is {controller.State}");
            // Events arrive on another thread: a VM that ran and ended at once may detach before its "started" is
            // seen. It ran unless it ended in an error (a start that failed), and systemd takes an exit before
            // READY=1 for a failed start, so say READY=1 (with the reason it ended as the status).
            if (ended.IsCompletedSuccessfully && ended.Result.Kind != VmExitKind.Error) BecomeReady();
        }
    }

    private void OnEvent(IVmController from, VmEvent e)
    {
        lock (_gate)
        {
            if (_controller != from)
            {
                // A late event of a VM already detached: only that it ran still matters.
                if (e.Kind == VmEventKind.Started) BecomeReady();
                return;
            }
            var controller = from;
            switch (e.Kind)
            {
                case VmEventKind.Started:
                    OnRunning(controller);
                    break;
                case VmEventKind.Resumed:
                    SetStatus($"running VM {controller.Id}");
                    break;
                case VmEventKind.Paused:
                    SetStatus($"paused VM {controller.Id}");
                    break;
                case VmEventKind.Reboot:
                    SetStatus(WithDetail("the guest rebooted", e.Detail));
                    break;
                case VmEventKind.Shutdown:
                    SetStatus(WithDetail("the guest shut down", e.Detail));
                    break;
                case VmEventKind.GuestPanic:
                    SetStatus(WithDetail("guest panic", e.Detail));
                    break;
                case VmEventKind.Fault:
                    SetStatus(WithDetail("failed", e.Detail));
                    break;
            }
        }
    }

    // Under _gate.
    private void OnRunning(IVmController controller)
    {
        SetStatus($"running VM {controller.Id}");
        BecomeReady();
    }

    // Under _gate.
    private void BecomeReady()
    {
        if (_ready || _stopping) return;
        _ready = true;
        if (_socket.Send($"READY=1\nSTATUS={_status}")) LogReady(_status);
    }

    // Under _gate. After STOPPING=1 only the reason it ended still goes out.
    private void SetStatus(string status)
    {
        if (_stopping && !status.StartsWith("ended", StringComparison.Ordinal)) return;
        _status = OneLine(status);
        _socket.Send($"STATUS={_status}");
    }

    private void WatchdogTick()
    {
        // A tick that takes longer than the period (a wedged controller) must not pile up behind itself.
        if (Interlocked.Exchange(ref _ticking, 1) == 1) return;
        try
        {
            var controller = _activeVm?.Current;
            VmProgress progress;
            try
            {
                progress = controller?.CheckProgress(_watchdog!.StallThreshold) ?? Healthy;
            }
            catch (ObjectDisposedException)
            {
                progress = Healthy; // it ended between Current and the check; the next one (if any) is checked next time
            }
            if (progress.IsHealthy)
            {
                if (_stalled)
                {
                    _stalled = false;
                    LogRecovered();
                    lock (_gate) if (_controller is { } c && c.State == VmState.Running) SetStatus($"running VM {c.Id}");
                }
                if (_socket.Send("WATCHDOG=1")) Interlocked.Increment(ref _pings);
                return;
            }
            string why = string.Join("; ", progress.Stalled);
            if (!_stalled)
            {
                _stalled = true;
                LogStalled(why);
                lock (_gate) SetStatus($"stalled: {why}");
            }
        }
        finally
        {
            Volatile.Write(ref _ticking, 0);
        }
    }

    private static string WithDetail(string what, string? detail) => string.IsNullOrEmpty(detail) ? what : $"{what}: {detail}";

    // One assignment per line in a notification: a newline in a reason would start a new variable.
    private static string OneLine(string text) => text.ReplaceLineEndings(" ");

    private void LogSendFailed(string failure) => LogNotifyFailed(failure);

    [LoggerMessage(Level = LogLevel.Information, Message = "told the service manager READY=1 ({Status})")]
    private partial void LogReady(string status);

    [LoggerMessage(Level = LogLevel.Information, Message = "systemd watchdog: timeout {Timeout:0.###} s, pinging every {Period:0.###} s while no vCPU or event-loop thread is stuck for {Threshold:0.###} s")]
    private partial void LogWatchdog(double timeout, double period, double threshold);

    [LoggerMessage(Level = LogLevel.Error, Message = "withholding the systemd watchdog ping, so the service manager restarts this VM: {Why}")]
    private partial void LogStalled(string why);

    [LoggerMessage(Level = LogLevel.Warning, Message = "the VM makes progress again; systemd watchdog pings resume")]
    private partial void LogRecovered();

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Failure}; later notifications that fail are not reported")]
    private partial void LogNotifyFailed(string failure);
}
