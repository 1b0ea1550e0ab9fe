using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Vmm.Statistics;

namespace KvmSharp.Vmm.Vcpus;

/// <summary>
/// One vCPU on its own dedicated thread, which creates it and runs KVM_RUN in a loop. Pause, resume
/// and stop work from any thread in bounded time, even while the guest spins inside KVM_RUN:
/// the request is published, kvm_run.immediate_exit is set (covers a thread about to enter), and
/// the thread gets the kick signal (covers a thread already inside, which returns EINTR).
/// </summary>
public sealed unsafe class VcpuRunner : IDisposable
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
    private int _pauseDepth;
    private int _hostCallDepth;
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

    /// <summary>
    /// Ask the vCPU to pause and wait until it has; false on timeout or when it already ended.
    /// Pauses nest: each successful Pause needs one Resume. Called on the vCPU's own thread (from a
    /// device or a hook) it returns at once: that thread is not running guest code anyway.
    /// </summary>
    public bool Pause(TimeSpan timeout) => BeginPause() && WaitPaused(timeout);

    /// <summary>First half of <see cref="Pause"/>: ask and kick, without waiting (so many vCPUs can be asked at once).</summary>
    public bool BeginPause()
    {
        lock (_gate)
        {
            if (HasEnded) return false;
            _pauseDepth++;
            if (IsOwnThread) return true;
            Volatile.Write(ref _requested, RequestPause);
        }
        Kick();
        return true;
    }

    /// <summary>Second half of <see cref="Pause"/>: wait until paused; on timeout the pause is withdrawn and false returned.</summary>
    public bool WaitPaused(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        lock (_gate)
        {
            if (IsOwnThread) return true;
            while (!IsQuiescent && !HasEnded)
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero || !Monitor.Wait(_gate, left)) break;
            }
            if (IsQuiescent) return true;
            ReleasePause();
            return false;
        }
    }

    public void Resume()
    {
        lock (_gate) ReleasePause();
    }

    // Caller holds _gate.
    private void ReleasePause()
    {
        if (_pauseDepth == 0) return;
        if (--_pauseDepth == 0 && _requested == RequestPause)
        {
            Volatile.Write(ref _requested, RequestRun);
            Monitor.PulseAll(_gate);
        }
    }

    private bool IsOwnThread => _thread == Thread.CurrentThread;

    // Paused in the run loop, or busy in a host call that cannot touch guest state unserialized.
    private bool IsQuiescent => _isPaused || _hostCallDepth > 0;

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
        kvm_run* run = _run;
        if (run != null) Volatile.Write(ref run->immediate_exit, (byte)1);
        int tid = Volatile.Read(ref _threadId);
        if (tid != 0 && !HasEnded) VcpuKickSignal.Kick(tid);
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
            lock (_gate)
            {
                _ended.Set();
                Monitor.PulseAll(_gate);
            }
            Ended?.Invoke(this);
        }
    }

    private VcpuState Loop(KvmVcpu vcpu)
    {
        kvm_run* run = vcpu.Run;
        VcpuExitCounters counters = Counters;
        while (true)
        {
            // An instruction being completed finishes before any pause or stop is honoured.
            if (_completion is null)
            {
                int request = Volatile.Read(ref _requested);
                if (request == RequestStopValue) return VcpuState.Stopped;
                if (request == RequestPause && !WaitWhilePaused()) return VcpuState.Stopped;
            }
            else Volatile.Write(ref run->immediate_exit, (byte)1);

            State = VcpuState.Running;
            long runStartedAt = counters.RunStarting();
            int result = vcpu.RunOnce();
            long handlerStartedAt = counters.RunReturned(runStartedAt);
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
            VcpuExitAction action = _dispatcher.Dispatch(Id, run, counters);
            counters.ExitHandled(run->exit_reason, handlerStartedAt);
            switch (action)
            {
                case VcpuExitAction.Continue:
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
            _isPaused = true;
            Monitor.PulseAll(_gate);
            while (_requested == RequestPause) Monitor.Wait(_gate);
            _isPaused = false;
            return _requested != RequestStopValue;
        }
    }

    public void Dispose()
    {
        if (_thread is not null && !HasEnded) Stop(TimeSpan.FromSeconds(5));
        _thread?.Join(TimeSpan.FromSeconds(5));
        _run = null;
        _vcpu?.Dispose();
        _ended.Dispose();
        _ready.Dispose();
    }
}
