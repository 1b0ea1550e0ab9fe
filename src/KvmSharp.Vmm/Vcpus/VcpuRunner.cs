using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Vmm.Statistics;

namespace KvmSharp.Vmm.Vcpus;

/// <summary>
/// One vCPU on its own dedicated thread, which creates it and runs KVM_RUN in a loop. Pause, resume
/// and stop work from any thread in bounded time, even while the guest spins inside KVM_RUN:
/// the request is published, kvm_run.immediate_exit is set (covers a thread about to enter), and
/// the thread gets the kick signal (covers a thread already inside, which returns EINTR).
/// Pauses are taken only as leases from the VM's <see cref="VcpuPauseGate"/>; each lease counts once here.
/// The kvm_run mapping and the vCPU fd are released only once the thread has left its loop.
/// </summary>
public sealed unsafe class VcpuRunner : IDisposable, IPausableVcpu
{
    private const int RequestRun = 0, RequestPause = 1, RequestStopValue = 2;

    private readonly KvmVm _vm;
    private readonly ExitDispatcher _dispatcher;
    private readonly Action<KvmVcpu> _configure;
    private readonly Func<KvmVcpu, string, string> _describeFault;
    private readonly object _gate = new();
    private readonly ManualResetEventSlim _ended = new(false);
    private readonly ManualResetEventSlim _ready = new(false);
    private Thread? _thread;
    private KvmVcpu? _vcpu;
    private kvm_run* _run;
    private int _requested;
    private int _threadId;
    private bool _isPaused;
    private bool _inLoop;
    private bool _disposeRequested;
    private bool _released;
    private int _pauseDepth;
    private int _hostCallDepth;
    // When the exit handler running now started (Stopwatch ticks), 0 outside one: read by CheckProgress.
    private long _handlerSince;
    private uint _handlerExitReason;
    // The last exit was a port or MMIO read whose data waits in kvm_run for the next KVM_RUN (vCPU thread only).
    private bool _inputPending;
    [ThreadStatic] private static VcpuRunner? t_current;
    private IInstructionCompletion? _completion;
    private long _exitCount;

    /// <param name="configure">Runs on the vCPU thread once the vCPU exists: CPUID, MSRs, registers.</param>
    /// <param name="describeFault">Builds the report for an exit that ends the VM (registers, code at RIP).</param>
    public VcpuRunner(KvmVm vm, int id, ExitDispatcher dispatcher, Action<KvmVcpu> configure, Func<KvmVcpu, string, string> describeFault)
    {
        _vm = vm;
        Id = id;
        _dispatcher = dispatcher;
        _configure = configure;
        _describeFault = describeFault;
        Counters = new VcpuExitCounters(id);
    }

    public int Id { get; }

    /// <summary>This vCPU's exit statistics (preallocated; written by its thread only).</summary>
    public VcpuExitCounters Counters { get; }
    public VcpuState State { get; private set; } = VcpuState.Created;

    /// <summary>Exits handled so far (read from any thread; approximate while running).</summary>
    public long ExitCount => Volatile.Read(ref _exitCount);

    /// <summary>For a faulted vCPU: what ended it, with registers and the disassembly at RIP.</summary>
    public string? FaultReport { get; private set; }

    /// <summary>Why an exit handler refused the exit that ended this vCPU (added to <see cref="FaultReport"/>).</summary>
    public string? FaultDetail { get; set; }

    /// <summary>The exception that ended the thread, if setup or KVM_RUN failed.</summary>
    public Exception? Error { get; private set; }

    /// <summary>Where vCPU 0 notes its start-up steps (for --stats), if anywhere.</summary>
    public Statistics.StartupTimeline? Timeline { get; init; }

    /// <summary>Run at a lower scheduling weight than the VMM's threads (<see cref="VcpuThreadWeight"/>): for VMs with more vCPUs than the host has CPUs.</summary>
    public bool LowerSchedulingWeight { get; init; }

    /// <summary>Raised on the vCPU thread when it ends, for any reason.</summary>
    public event Action<VcpuRunner>? Ended;

    public bool HasEnded => _ended.IsSet;

    /// <summary>True once <see cref="Start"/> has been called (a VM stopped while starting leaves some runners unstarted).</summary>
    public bool WasStarted => Volatile.Read(ref _thread) is not null;

    public void Start()
    {
        VcpuKickSignal.Number.ToString(); // install the handler before any kick can be sent
        var thread = new Thread(ThreadMain, maxStackSize: 1 << 20) { Name = $"vcpu-{Id}", IsBackground = true };
        Volatile.Write(ref _thread, thread);
        thread.Start();
    }

    /// <summary>Wait until the vCPU exists and is configured (or failed to be).</summary>
    public bool WaitUntilReady(TimeSpan timeout) => _ready.Wait(timeout);

    // ---- pause protocol (driven by VcpuPauseGate leases only) ----------------------------------

    /// <summary>Ask the vCPU to park (one more pause held) and kick it; false when its thread has ended.</summary>
    bool IPausableVcpu.BeginPause()
    {
        bool kick;
        lock (_gate)
        {
            if (HasEnded) return false;
            _pauseDepth++;
            if (IsOwnThread) return true; // this thread runs no guest code while it asks
            kick = _requested == RequestRun; // an earlier pause already kicked it
            if (kick) Volatile.Write(ref _requested, RequestPause);
        }
        if (kick) Kick();
        return true;
    }

    /// <summary>Wait (until <paramref name="deadline"/>, Stopwatch ticks) until the vCPU runs no guest code: parked, in a host call, not yet in its loop, or ended.</summary>
    bool IPausableVcpu.WaitParked(long deadline)
    {
        lock (_gate)
        {
            if (IsOwnThread) return true;
            while (!IsQuiescent && !HasEnded)
            {
                long left = deadline - System.Diagnostics.Stopwatch.GetTimestamp();
                if (left <= 0) return false;
                Monitor.Wait(_gate, TimeSpan.FromTicks(Math.Max(1, left * TimeSpan.TicksPerSecond / System.Diagnostics.Stopwatch.Frequency)));
            }
            return true;
        }
    }

    /// <summary>Release one pause; the vCPU runs again when none is left.</summary>
    void IPausableVcpu.ReleasePause()
    {
        lock (_gate)
        {
            if (_pauseDepth == 0) return;
            if (--_pauseDepth == 0 && _requested == RequestPause)
            {
                Volatile.Write(ref _requested, RequestRun);
                Monitor.PulseAll(_gate);
            }
        }
    }

    /// <summary>Pauses held on this vCPU now (one per lease).</summary>
    public int PauseDepth
    {
        get { lock (_gate) return _pauseDepth; }
    }

    /// <summary>KVM_KVMCLOCK_CTRL while the vCPU runs no guest code; 0, -errno, or 1 when there was nothing to tell (ended, not created).</summary>
    int IPausableVcpu.StopGuestClock()
    {
        lock (_gate)
        {
            if (_vcpu is null || _released || HasEnded || !IsQuiescent) return 1;
            return _vcpu.KvmclockCtrl();
        }
    }

    /// <summary>Where the vCPU is, for a pause that it did not honour in time.</summary>
    string IPausableVcpu.DescribeNotParked()
    {
        long since = Volatile.Read(ref _handlerSince);
        if (since != 0)
            return $"vCPU {Id} is in the exit handler for {(KvmExitReason)Volatile.Read(ref _handlerExitReason)} since {System.Diagnostics.Stopwatch.GetElapsedTime(since).TotalSeconds:0.0} s";
        return Volatile.Read(ref _threadId) == 0 ? $"vCPU {Id} is starting" : $"vCPU {Id} did not leave KVM_RUN after its kick";
    }

    /// <summary>
    /// Whether this vCPU has been in one userspace exit handler for longer than <paramref name="threshold"/>
    /// (a vCPU in KVM_RUN, parked or ended is fine), and if so, which exit and for how long.
    /// </summary>
    public string? DescribeStall(TimeSpan threshold)
    {
        long since = Volatile.Read(ref _handlerSince);
        if (since == 0) return null;
        var elapsed = System.Diagnostics.Stopwatch.GetElapsedTime(since);
        if (elapsed <= threshold || HasEnded) return null;
        return $"vCPU {Id} has been in the exit handler for {(KvmExitReason)Volatile.Read(ref _handlerExitReason)} for {elapsed.TotalSeconds:0.0} s";
    }

    private bool IsOwnThread => _thread == Thread.CurrentThread;

    // Paused in the run loop, busy in a host call that cannot touch guest state unserialized, or not yet
    // in the loop (where a pending pause parks it before any guest code runs). Caller holds _gate.
    private bool IsQuiescent => _isPaused || _hostCallDepth > 0 || !_inLoop;

    /// <summary>The runner whose thread is the calling thread, if any.</summary>
    public static VcpuRunner? Current => t_current;

    /// <summary>The vCPU, once its thread has created it.</summary>
    public KvmVcpu? Vcpu => _vcpu;

    /// <summary>
    /// On the vCPU's own thread: count it as paused while it runs host code that may itself wait for
    /// the other vCPUs to pause (a tracking call from a hook), so two such calls cannot deadlock.
    /// </summary>
    public void EnterHostCall()
    {
        lock (_gate)
        {
            _hostCallDepth++;
            Monitor.PulseAll(_gate);
        }
    }

    public void LeaveHostCall()
    {
        lock (_gate) _hostCallDepth--;
    }

    /// <summary>
    /// On the vCPU's own thread, from an exit handler: finish the current instruction in KVM before the
    /// guest runs on, and tell <paramref name="listener"/> when it is done. The next KVM_RUN has
    /// immediate_exit set; KVM completes the pending MMIO first, so it either returns the
    /// instruction's next exit (another fragment of the same instruction: the guest has not run) or
    /// EINTR once the instruction is complete.
    /// </summary>
    public void CompleteInstructionBeforeGuestRuns(IInstructionCompletion listener) => _completion = listener;

    /// <summary>Ask the vCPU to stop; waits up to <paramref name="timeout"/> for its thread to leave KVM_RUN.</summary>
    public bool Stop(TimeSpan timeout)
    {
        RequestStop();
        return _ended.Wait(timeout);
    }

    /// <summary>Ask the vCPU to stop without waiting (safe from the vCPU's own thread, e.g. inside a device).</summary>
    public void RequestStop()
    {
        lock (_gate)
        {
            Volatile.Write(ref _requested, RequestStopValue);
            Monitor.PulseAll(_gate);
        }
        if (!IsOwnThread) Kick();
    }

    public bool WaitForEnd(TimeSpan timeout) => _ended.Wait(timeout);

    private void Kick()
    {
        int tid;
        lock (_gate)
        {
            // Under the lock: the thread releases kvm_run only after it ended, and marks that here first.
            if (_released || HasEnded) return;
            kvm_run* run = _run;
            if (run != null) Volatile.Write(ref run->immediate_exit, (byte)1);
            tid = Volatile.Read(ref _threadId);
        }
        if (tid != 0) VcpuKickSignal.Kick(tid);
    }

    private void ThreadMain()
    {
        try
        {
            t_current = this;
            Timeline?.Mark("vCPU thread running");
            _vcpu = _vm.CreateVcpu(Id);
            Timeline?.Mark("vCPU created");
            _configure(_vcpu);
            Timeline?.Mark("vCPU configured");
            _run = _vcpu.Run;
            Volatile.Write(ref _threadId, VcpuKickSignal.CurrentThreadId());
            if (LowerSchedulingWeight) VcpuThreadWeight.LowerCurrentThread(); // after set-up, which ran at the VMM's weight
            _ready.Set();
            State = Loop(_vcpu);
        }
        catch (Exception e)
        {
            Error = e;
            FaultReport ??= $"vCPU {Id}: {e.Message}";
            State = VcpuState.Faulted;
        }
        finally
        {
            _ready.Set();
            Volatile.Write(ref _threadId, 0);
            Volatile.Write(ref _handlerSince, 0);
            bool releaseNow;
            lock (_gate)
            {
                _ended.Set();
                Monitor.PulseAll(_gate);
                releaseNow = _disposeRequested;
            }
            Ended?.Invoke(this);
            // Disposed while this thread was still running: the vCPU was left for this thread to release.
            if (releaseNow) ReleaseVcpu();
        }
    }

    private VcpuState Loop(KvmVcpu vcpu)
    {
        kvm_run* run = vcpu.Run;
        VcpuExitCounters counters = Counters;
        // From here on a pause parks this thread before it runs guest code (seen under the lock by WaitParked).
        lock (_gate) _inLoop = true;
        while (true)
        {
            // An instruction being completed finishes before any pause or stop is honoured.
            if (_completion is null)
            {
                int request = Volatile.Read(ref _requested);
                if (request == RequestStopValue) return VcpuState.Stopped;
                if (request == RequestPause)
                {
                    // The exit just handled was a read whose data waits in kvm_run: KVM completes the
                    // instruction on the next KVM_RUN and, with immediate_exit set, returns EINTR at once.
                    // Parking only after that means a pause never holds a half-done `in` or MMIO read.
                    if (_inputPending) Volatile.Write(ref run->immediate_exit, (byte)1);
                    else if (!WaitWhilePaused()) return VcpuState.Stopped;
                }
            }
            else Volatile.Write(ref run->immediate_exit, (byte)1);

            State = VcpuState.Running;
            long runStartedAt = counters.RunStarting();
            Volatile.Write(ref _handlerSince, 0);
            int result = vcpu.RunOnce();
            long handlerStartedAt = counters.RunReturned(runStartedAt);
            _inputPending = false;
            if (result < 0)
            {
                if (result == -Errno.EINTR || result == -Errno.EAGAIN)
                {
                    // Kicked: clear the flag, then re-read the request (the fence orders the two).
                    Volatile.Write(ref run->immediate_exit, (byte)0);
                    Interlocked.MemoryBarrier();
                    CompleteInstruction();
                    continue;
                }
                throw new KvmException("KVM_RUN", -result, $"vCPU {Id}");
            }

            _exitCount++;
            Volatile.Write(ref _handlerExitReason, run->exit_reason);
            Volatile.Write(ref _handlerSince, handlerStartedAt);
            VcpuExitAction action = _dispatcher.Dispatch(Id, run, counters);
            counters.ExitHandled(run->exit_reason, handlerStartedAt);
            switch (action)
            {
                case VcpuExitAction.Continue:
                    _inputPending = IsPendingInput(run);
                    continue;
                case VcpuExitAction.Halt:
                    CompleteInstruction();
                    return VcpuState.Halted;
                default:
                    CompleteInstruction();
                    string exit = VcpuExitDescription.Describe(run);
                    FaultReport = _describeFault(vcpu, FaultDetail is { } detail ? $"{exit}: {detail}" : exit);
                    return VcpuState.Faulted;
            }
        }
    }

    // A port `in` or an MMIO read: KVM writes the data that is now in kvm_run to the guest on the next KVM_RUN.
    private static bool IsPendingInput(kvm_run* run)
    {
        var reason = (KvmExitReason)run->exit_reason;
        byte* union = (byte*)run + kvm_run.ExitUnionOffset;
        return reason switch
        {
            KvmExitReason.KVM_EXIT_IO => ((kvm_run_io*)union)->direction == KvmRunIoDirection.KVM_EXIT_IO_IN,
            KvmExitReason.KVM_EXIT_MMIO => ((kvm_run_mmio*)union)->is_write == 0,
            _ => false,
        };
    }

    private void CompleteInstruction()
    {
        if (_completion is not { } listener) return;
        _completion = null;
        listener.InstructionCompleted(Id);
    }

    // Returns false when a stop arrives while paused.
    private bool WaitWhilePaused()
    {
        lock (_gate)
        {
            State = VcpuState.Paused;
            Volatile.Write(ref _handlerSince, 0);
            _isPaused = true;
            Monitor.PulseAll(_gate);
            while (_requested == RequestPause) Monitor.Wait(_gate);
            _isPaused = false;
            return _requested != RequestStopValue;
        }
    }

    /// <summary>True once the vCPU fd and its kvm_run mapping are released (never while the thread runs).</summary>
    public bool IsReleased
    {
        get { lock (_gate) return _released; }
    }

    public void Dispose() => Dispose(TimeSpan.FromSeconds(5));

    /// <summary>
    /// Stop the thread (waiting up to <paramref name="wait"/>) and release the vCPU. A thread that has not
    /// ended by then (stuck in a device, say) keeps its kvm_run mapping and fd: it releases them itself
    /// when it leaves, so nothing is ever unmapped under it.
    /// </summary>
    public void Dispose(TimeSpan wait)
    {
        if (WasStarted && !HasEnded) Stop(wait);
        lock (_gate)
        {
            if (_disposeRequested) return;
            _disposeRequested = true;
            if (WasStarted && !HasEnded) return;
        }
        _thread?.Join(TimeSpan.FromSeconds(1)); // it has ended its loop; let it finish returning
        ReleaseVcpu();
    }

    private void ReleaseVcpu()
    {
        KvmVcpu? vcpu;
        lock (_gate)
        {
            if (_released) return;
            _released = true;
            _run = null;
            vcpu = _vcpu;
        }
        vcpu?.Dispose();
    }
}
