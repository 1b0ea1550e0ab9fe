using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using KvmSharp.Vmm.Machine;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace KvmSharp.Vmm.Lifecycle;

/// <summary>
/// Owns one <see cref="VirtualMachine"/> and applies every control request to it in order, one at a time,
/// on its own thread ("vm-control"): callers await the result. States: Created → Running ⇄ Paused →
/// Stopped, or Failed when the VM ends by a fault, an error or a timeout. A request the state does not
/// allow throws <see cref="VmTransitionException"/> and changes nothing.
/// </summary>
/// <remarks>
/// Paused means at least one lease taken through <see cref="PauseAsync"/> is held. Page-track carves and
/// register dumps take leases of their own from the same <see cref="Vcpus.VcpuPauseGate"/> without going
/// through here: they must work in any state (a tracker detaching after the VM ended) and from vCPU threads
/// inside hooks, and they last microseconds, so they neither change <see cref="State"/> nor raise events.
/// No lease can end another's pause.
/// </remarks>
public sealed partial class VmController : IVmController
{
    /// <summary>How long <see cref="PauseAsync"/> waits for every vCPU to park unless told otherwise.</summary>
    public static readonly TimeSpan DefaultPauseTimeout = TimeSpan.FromSeconds(5);

    private static readonly TimeSpan ShutdownWait = TimeSpan.FromSeconds(10);

    private readonly IControlledMachine _machine;
    private readonly VirtualMachine? _vm;
    private readonly ILogger _logger;
    private readonly BlockingCollection<Command> _commands = new();
    private readonly Thread _worker;
    private readonly VmEventStream _events;
    private readonly EventLoopProbe _eventLoop;
    private readonly TaskCompletionSource<VmOutcome> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    // The leases taken through PauseAsync and not yet released; the worker thread's alone.
    private readonly List<PauseLease> _leases = new();
    private int _state = (int)VmState.Created;
    private string? _applying;
    private long _applyingSince;
    private int _disposed;

    /// <param name="machine">The VM, created and not yet started; the controller owns it from now on and disposes it.</param>
    /// <param name="id">The VM's id (letters, digits, '.', '_', '-'; at most 64); a random 8-digit hex id when null.</param>
    public VmController(VirtualMachine machine, string? id = null, ILogger<VmController>? logger = null)
        : this(machine ?? throw new ArgumentNullException(nameof(machine)), machine, id, logger)
    {
        machine.Metrics.Pauses.Observe(this); // kvmsharp.vm.pause_time, for the controller's life
    }

    internal VmController(IControlledMachine machine, VirtualMachine? vm, string? id, ILogger? logger)
    {
        Id = id is null ? Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4)) : CheckId(id);
        _machine = machine;
        _vm = vm;
        _logger = logger ?? NullLogger.Instance;
        _events = new VmEventStream(_logger);
        _eventLoop = new EventLoopProbe(() => _machine.EventLoop);
        _worker = new Thread(Work) { Name = "vm-control", IsBackground = true };
        _worker.Start();
        _machine.Ended += OnMachineEnded;
        if (_machine.Outcome is { } ended) OnMachineEnded(ended); // ended before we listened
    }

    public string Id { get; }

    public VmState State => (VmState)Volatile.Read(ref _state);

    public VirtualMachine Machine => _vm ?? throw new InvalidOperationException("this controller drives a test machine, not a VirtualMachine");

    /// <summary>How long a pause waits for every vCPU to park before it is refused (nothing stays paused).</summary>
    public TimeSpan PauseTimeout { get; init; } = DefaultPauseTimeout;

    public Task<VmOutcome> Completion => _completion.Task;

    public Task StartAsync(CancellationToken cancellation = default) => Submit("start", () =>
    {
        if (State != VmState.Created) throw Refuse("start", $"cannot start the VM: it is {State} (only a Created VM starts)");
        if (_machine.Outcome is { } outcome) throw Refuse("start", $"cannot start the VM: it has already ended ({outcome.Summary})");
        try
        {
            _machine.Start();
        }
        catch (Exception e)
        {
            _machine.End(VmOutcome.Error($"starting the vCPUs failed: {e.Message}")); // ends it here, on this thread: Failed
            throw;
        }
        if (State != VmState.Created) return true; // it ended while starting
        Become(VmState.Running, VmEventKind.Started, null);
        return true;
    }, cancellation);

    public Task<IPauseLease> PauseAsync(string holder, CancellationToken cancellation = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(holder);
        return Submit("pause", () =>
        {
            if (State is not (VmState.Running or VmState.Paused))
                throw Refuse("pause", $"cannot pause the VM: it is {State} (only a Running or Paused VM pauses)");
            if (!_machine.Pauses.TryPause(holder, PauseTimeout, out var taken, out string? failure))
                throw new TimeoutException($"the VM did not pause: {failure}; it runs on");
            var lease = new PauseLease(this, holder, taken);
            _leases.Add(lease);
            if (State == VmState.Running)
            {
                foreach (string clockFailure in _machine.Pauses.StopGuestClocks(taken)) LogClockNotStopped(_logger, Id, clockFailure);
                Become(VmState.Paused, VmEventKind.Paused, holder);
            }
            return (IPauseLease)lease;
        }, cancellation);
    }

    public Task SendCtrlAltDelAsync(CancellationToken cancellation = default) => Submit("ctrl-alt-del", () =>
    {
        if (State != VmState.Running) throw Refuse("ctrl-alt-del", $"cannot send Ctrl-Alt-Del: the VM is {State}, not Running");
        if (!_machine.RequestGuestShutdown())
            throw Refuse("ctrl-alt-del", "cannot send Ctrl-Alt-Del: this VM has no PS/2 keyboard controller to receive it (only Linux guests get one); stop it instead");
        return true;
    }, cancellation);

    public Task StopAsync(string reason, CancellationToken cancellation = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(reason);
        return Submit("stop", () =>
        {
            ApplyStop(reason);
            return true;
        }, cancellation);
    }

    public IDisposable Subscribe(Action<VmEvent> observer) => _events.Subscribe(observer);

    public void Publish(string kind, string? detail)
    {
        if (string.IsNullOrEmpty(kind) || !kind.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-') || kind[0] == '-')
            throw new ArgumentException($"event kind '{kind}' is not a lower-case name like '{VmEventKind.GuestPanic}'", nameof(kind));
        _events.Publish(kind, detail);
    }

    /// <summary>
    /// What is stuck: vCPUs in a userspace exit handler for longer than <paramref name="stallThreshold"/>, an
    /// event loop that did not run a posted no-op within it, a control request applied for longer. Waits at
    /// most the threshold (for the event loop's no-op); a vCPU in KVM_RUN, parked or ended counts as progressing.
    /// </summary>
    public VmProgress CheckProgress(TimeSpan stallThreshold)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(stallThreshold, TimeSpan.Zero);
        var stalled = new List<string>(_machine.StalledVcpus(stallThreshold));
        long since = Volatile.Read(ref _applyingSince);
        if (since != 0 && Stopwatch.GetElapsedTime(since) is var busy && busy > stallThreshold)
            stalled.Add($"the VM controller has been applying '{Volatile.Read(ref _applying)}' for {busy.TotalSeconds:0.0} s");
        if (_eventLoop.Check(stallThreshold) is { } loop) stalled.Add(loop);
        return new VmProgress(stalled);
    }

    /// <summary>Stop the VM if it still runs, let subscribers see its last event, end the control thread and dispose the VM.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        bool onWorker = IsWorkerThread;
        try
        {
            if (onWorker) ApplyStop("the VM controller was disposed");
            else StopAsync("the VM controller was disposed").Wait(ShutdownWait);
        }
        catch (AggregateException)
        {
            // It ends anyway: the VM is disposed below.
        }
        _commands.CompleteAdding();
        if (!onWorker) _worker.Join(ShutdownWait);
        _machine.Ended -= OnMachineEnded;
        _events.WaitDelivered(TimeSpan.FromSeconds(1));
        _machine.Dispose();
    }

    // ---- the command channel -------------------------------------------------------------

    private bool IsWorkerThread => Thread.CurrentThread == _worker;

    private Task<T> Submit<T>(string request, Func<T> apply, CancellationToken cancellation)
    {
        var command = new Command<T>(request, apply);
        if (IsWorkerThread)
        {
            command.Run(); // from inside a request (a lease disposed by one): queueing would wait for itself
            return command.Task;
        }
        if (cancellation.IsCancellationRequested) return Task.FromCanceled<T>(cancellation);
        try
        {
            _commands.Add(command);
        }
        catch (InvalidOperationException)
        {
            throw new ObjectDisposedException(nameof(VmController), $"the controller of VM {Id} is disposed: '{request}' cannot be applied");
        }
        if (cancellation.CanBeCanceled)
        {
            var registration = cancellation.Register(() => command.Cancel(cancellation));
            command.Task.ContinueWith(_ => registration.Dispose(), TaskScheduler.Default);
        }
        return command.Task;
    }

    private void Work()
    {
        foreach (var command in _commands.GetConsumingEnumerable())
        {
            Volatile.Write(ref _applying, command.Request);
            Volatile.Write(ref _applyingSince, Stopwatch.GetTimestamp());
            command.Run();
            Volatile.Write(ref _applyingSince, 0);
        }
    }

    // ---- transitions (worker thread) ------------------------------------------------------

    private void ApplyStop(string reason)
    {
        if (State is VmState.Stopped or VmState.Failed) return; // a stopped VM stays stopped
        _machine.End(VmOutcome.Stopped(reason)); // raises Ended here, which applies it
        if (_machine.Outcome is { } outcome) ApplyEnded(outcome); // another end won the race: that one counts
    }

    private void OnMachineEnded(VmOutcome outcome)
    {
        if (IsWorkerThread)
        {
            ApplyEnded(outcome);
            return;
        }
        try
        {
            _ = Submit("end", () =>
            {
                ApplyEnded(outcome);
                return true;
            }, CancellationToken.None);
        }
        catch (ObjectDisposedException)
        {
            // Disposed: nobody is left to tell.
        }
    }

    private void ApplyEnded(VmOutcome outcome)
    {
        if (State is VmState.Stopped or VmState.Failed) return;
        bool failed = outcome.Kind is VmExitKind.Fault or VmExitKind.Error or VmExitKind.Timeout;
        string kind = outcome.Kind switch
        {
            VmExitKind.Reboot => VmEventKind.Reboot,
            _ when failed => VmEventKind.Fault,
            _ => VmEventKind.Shutdown,
        };
        Become(failed ? VmState.Failed : VmState.Stopped, kind, outcome.Summary);
        // The vCPU threads are kicked; Completion waits (bounded) until they have left KVM_RUN, off this thread.
        Task.Run(() =>
        {
            try
            {
                _machine.WaitForVcpuThreads();
            }
            finally
            {
                _completion.TrySetResult(outcome);
            }
        });
    }

    private void Release(PauseLease lease)
    {
        if (!_leases.Remove(lease)) return;
        lease.Taken.Dispose();
        if (_leases.Count == 0 && State == VmState.Paused) Become(VmState.Running, VmEventKind.Resumed, lease.Holder);
    }

    private void Become(VmState state, string eventKind, string? detail)
    {
        var from = State;
        Volatile.Write(ref _state, (int)state);
        LogTransition(_logger, Id, from, state, detail ?? "");
        _events.Publish(eventKind, detail);
    }

    private VmTransitionException Refuse(string request, string message) => new(State, request, message);

    private static string CheckId(string id)
    {
        bool valid = id.Length is > 0 and <= 64 && char.IsAsciiLetterOrDigit(id[0])
                     && id.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-');
        return valid ? id : throw new ArgumentException($"VM id '{id}' is not valid: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", nameof(id));
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "VM {Id}: {From} -> {To} {Detail}")]
    private static partial void LogTransition(ILogger logger, string id, VmState from, VmState to, string detail);

    [LoggerMessage(Level = LogLevel.Warning, Message = "VM {Id}: the guest was not told of its pause: {Failure}")]
    private static partial void LogClockNotStopped(ILogger logger, string id, string failure);

    private abstract class Command(string request)
    {
        public string Request { get; } = request;
        public abstract void Run();
    }

    private sealed class Command<T>(string request, Func<T> apply) : Command(request)
    {
        private const int Pending = 0, Running = 1, Canceled = 2;
        private readonly TaskCompletionSource<T> _result = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _status;

        public Task<T> Task => _result.Task;

        public override void Run()
        {
            if (Interlocked.CompareExchange(ref _status, Running, Pending) != Pending) return;
            try
            {
                _result.SetResult(apply());
            }
            catch (Exception e)
            {
                _result.SetException(e);
            }
        }

        // Only a request not yet being applied can be withdrawn; once applied it runs to its end.
        public void Cancel(CancellationToken cancellation)
        {
            if (Interlocked.CompareExchange(ref _status, Canceled, Pending) == Pending) _result.TrySetCanceled(cancellation);
        }
    }

    /// <summary>A pause taken through the controller: disposing it is the holder's resume, applied in order like any request.</summary>
    private sealed class PauseLease(VmController controller, string holder, IPauseLease taken) : IPauseLease
    {
        private int _disposed;

        public string Holder { get; } = holder;
        public IPauseLease Taken { get; } = taken;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            try
            {
                controller.Submit("resume", () =>
                {
                    controller.Release(this);
                    return true;
                }, CancellationToken.None).GetAwaiter().GetResult();
            }
            catch (ObjectDisposedException)
            {
                Taken.Dispose(); // the controller is gone: only the vCPUs' pause is left to end
            }
        }

        public override string ToString() => $"pause lease of {Holder}";
    }
}
