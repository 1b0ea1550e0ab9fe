using System.Diagnostics;
using System.Runtime.ExceptionServices;
using KvmSharp.Cli;
using KvmSharp.Devices.Serial;
using KvmSharp.Kvm;
using KvmSharp.Terminal;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Boot.Linux;
using KvmSharp.Vmm.Guests;
using KvmSharp.Vmm.Lifecycle;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Statistics;
using KvmSharp.Vmm.Trackers;
using KvmSharp.Vmm.Trackers.Remote;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace KvmSharp.Hosting;

/// <summary>
/// Runs one VM for the life of the host (again after each reboot with --on-reboot restart). The VM
/// ending stops the host with the guest's status; the host stopping (Ctrl-C, SIGTERM, systemd) stops
/// the VM cleanly. With --expect/--timeout it watches the console and decides the exit status.
/// </summary>
/// <remarks>
/// The first VM is started by <see cref="StartFirstVm"/> before the host is built: the host (dependency injection,
/// logging, systemd, lifetime) is most of the start-up and the VM needs none of it. Until the host is there, stops
/// come from the signals alone (which this service handles itself), and log entries wait in a
/// <see cref="DeferredLogger{T}"/> that the host's logger replays.
/// </remarks>
/// <param name="active">Set to each VM's controller while it is current (the API and the notifier read it).</param>
/// <param name="instanceStart">With --wait-for-start: completes with the options the API configured, at InstanceStart; null: boot <paramref name="options"/> at once.</param>
public sealed class VmService(
    ValidatedRunOptions options,
    ExitCodeHolder exitCode,
    ILogger<VmService> logger,
    ActiveVm? active = null,
    Task<ValidatedRunOptions>? instanceStart = null) : BackgroundService
{
    private const int TailLines = 25;

    // What the VM boots: the command line's, or (--wait-for-start) what the API configured by InstanceStart.
    private ValidatedRunOptions _options = options;
    private readonly ActiveVm _active = active ?? new ActiveVm();

    // The controller of the VM running now (null between reboots): console input, Ctrl-A x and output failures act on it.
    private IVmController? _current;
    private volatile bool _quitFromConsole;
    private volatile string? _outputFailure;
    private IVmController? _stopping;
    // The host's stop, or a stop signal before the host exists: no restart after it.
    private readonly CancellationTokenSource _stop = new();
    private volatile IHostApplicationLifetime? _lifetime;
    private Task? _run;
    private readonly ManualResetEventSlim _firstVmStarted = new();
    // Log entries held until the host's logger exists come out first: the guest's output waits for them, so the
    // console shows "booting ..." before the guest's first line, as when the host was built first.
    private readonly Task _logReady = logger is DeferredLogger<VmService> deferred ? deferred.Attached : Task.CompletedTask;

    /// <summary>
    /// Start the first VM now, without waiting for the host, on a thread of its own: the caller builds the host
    /// meanwhile (with many vCPUs, starting their threads takes long on a busy host). The run goes on in the background.
    /// </summary>
    public void StartFirstVm()
    {
        if (_run is not null) throw new InvalidOperationException("the first VM has already been started");
        _run = Task.Factory.StartNew(() => RunAsync(_stop.Token), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
    }

    /// <summary>
    /// Wait until the first VM's vCPUs are started (or its start failed), at most <paramref name="timeout"/>: the host is
    /// built after that, so the two do not compete for the CPUs, unless starting takes long (hundreds of vCPUs).
    /// </summary>
    public bool WaitUntilFirstVmStarted(TimeSpan timeout) => _firstVmStarted.Wait(timeout);

    /// <summary>The host this service runs in (its lifetime stops when the VM's run ends).</summary>
    public void AttachHost(IHostApplicationLifetime lifetime)
    {
        ArgumentNullException.ThrowIfNull(lifetime);
        _lifetime = lifetime;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var hostStop = stoppingToken.Register(() => _stop.Cancel());
        try
        {
            if (_run is null) StartFirstVm();
            await _run!;
        }
        finally
        {
            _lifetime?.StopApplication();
        }
    }

    public override void Dispose()
    {
        base.Dispose();
        _stop.Dispose();
        _firstVmStarted.Dispose();
    }

    private async Task RunAsync(CancellationToken stoppingToken)
    {
        if (instanceStart is not null && !await WaitForInstanceStart(instanceStart, stoppingToken)) return;
        StreamSerialSink? console = null;
        SerialInputPump? input = null;
        VirtualMachine? firstVm = null;
        using var signals = StopSignals.Register(StopOnSignal, StopHost);
        try
        {
            console = SerialOutput.Open(_options.Serial, writeAfter: _logReady);
            var capture = _options.Expect is not null || _options.Timeout is not null ? new ExpectSerialSink(_options.Expect) : null;
            ISerialSink sink = capture is null ? console : new TeeSerialSink(console, capture);
            var config = BuildConfig(_options, sink, WarnFromVm);
            StartupTimeline.Process.Mark("console opened, guest prepared");
            firstVm = VirtualMachine.Create(config);
            console.Failed += OnConsoleOutputFailed;
            if (console.Failure is { } early) OnConsoleOutputFailed(early);
            if (_options.Kernel is not null && !_options.Multiboot) WarnIfGuestKernelModeIsEmulated();
            input = SerialInputPump.Start(QuitFromConsole, notice => logger.LogInformation("{Notice}", notice));

            var clock = Stopwatch.StartNew();
            VmOutcome outcome;
            int boots = 0;
            do
            {
                if (boots++ > 0) logger.LogInformation("the guest rebooted: restarting it (--on-reboot restart)");
                var prepared = firstVm;
                firstVm = null; // RunOnce owns it now
                outcome = await RunOnce(prepared, sink, console, input, capture, clock, stoppingToken);
            }
            while (outcome.Kind == VmExitKind.Reboot && _options.RestartOnReboot && !stoppingToken.IsCancellationRequested && !_quitFromConsole);

            exitCode.ExitCode = Conclude(outcome, capture);
        }
        catch (OptionsException e)
        {
            logger.LogError("{Message}", e.Message);
            exitCode.ExitCode = Program.InvalidSettings;
        }
        catch (Exception e) when (e is GuestInputException or InvalidDataException or FileNotFoundException)
        {
            // The VMM's own checks of what the user gave (a guest file changed since validation, say): still the user's input.
            logger.LogError("{Message}", e.Message);
            exitCode.ExitCode = Program.InvalidSettings;
        }
        catch (Exception e)
        {
            // Whatever failed, the run did not succeed: one line for the user, the stack for --debug logging.
            logger.LogError("{Message}", ErrorMessages.OneLine(e));
            logger.LogDebug(e, "the VM service failed");
            exitCode.ExitCode = VmOutcome.ErrorCode;
        }
        finally
        {
            _firstVmStarted.Set();
            firstVm?.Dispose(); // made, never run
            input?.Dispose(); // restores the terminal
            await _logReady; // the held output goes out after the held log entries
            console?.Dispose();
            if (console?.DroppedBytes is > 0 and var dropped)
                logger.LogWarning("{Dropped} bytes of guest console output were dropped: the reader of --serial {Serial} fell behind or went away", dropped, _options.Serial);
        }
    }

    // --wait-for-start: the host builds meanwhile; a stop before InstanceStart ends the run with status 0 (nothing ran).
    private async Task<bool> WaitForInstanceStart(Task<ValidatedRunOptions> started, CancellationToken stoppingToken)
    {
        _firstVmStarted.Set();
        using var signals = StopSignals.Register(() => _stop.Cancel(), () =>
        {
            _stop.Cancel();
            _lifetime?.StopApplication();
        });
        try
        {
            _options = await started.WaitAsync(stoppingToken);
            return true;
        }
        catch (OperationCanceledException)
        {
            logger.LogInformation("stopped before the API's InstanceStart: no VM was booted");
            exitCode.ExitCode = 0;
            return false;
        }
    }

    // SIGTERM, SIGINT: stop the VM at once from the signal's thread, and the run with it (no restart after it).
    private void StopOnSignal()
    {
        StopCurrentVmGracefully();
        _stop.Cancel();
    }

    // SIGHUP: the host stops too (it does not handle SIGHUP itself).
    private void StopHost()
    {
        StopOnSignal();
        _lifetime?.StopApplication();
    }

    // Ctrl-A x: a host stop, at once (no Ctrl-Alt-Del grace), and no restart after it.
    private void QuitFromConsole()
    {
        _quitFromConsole = true;
        if (Volatile.Read(ref _current) is { } controller) StopNow(controller, "quit from the console (Ctrl-A x)");
    }

    // The console's reader went away (EPIPE) or its file failed: end the run rather than run a guest nobody sees.
    private void OnConsoleOutputFailed(Exception failure)
    {
        string where = _options.Serial == "stdout" ? "stdout" : $"'{_options.Serial}'";
        string why = failure is IOException { HResult: EpipeErrno }
            ? $"the reader of the serial console ({where}) went away (EPIPE)"
            : $"writing the serial console to {where} failed: {failure.Message}";
        _outputFailure = why;
        // An outcome of its own (its exit status): the controller sees it through the VM's end.
        Volatile.Read(ref _current)?.Machine.End(VmOutcome.OutputFailed(why));
    }

    private const int EpipeErrno = 32;

    private void WarnFromVm(string message) => logger.LogWarning("{Message}", message);

    // The first boot runs the VM made with the console; a reboot makes a new one.
    private async Task<VmOutcome> RunOnce(VirtualMachine? prepared, ISerialSink sink, StreamSerialSink console, SerialInputPump input, ExpectSerialSink? capture, Stopwatch clock, CancellationToken stoppingToken)
    {
        var vm = prepared ?? VirtualMachine.Create(BuildConfig(_options, sink, WarnFromVm));
        // One controller per VM (a reboot makes a new one); it owns the VM and disposes it, and every stop below goes through it.
        using var controller = VmControllers.Create(vm);
        WriteAuditTracker? audit = null;
        if (_options.Track.Count > 0)
        {
            audit = new WriteAuditTracker(_options.Track, message => logger.LogInformation("{Message}", message));
            audit.Attach(vm.PageTracker);
            logger.LogInformation("auditing guest writes to {Ranges}", string.Join(", ", _options.Track));
        }
        // Out-of-process page trackers; disposed (every tracker detached, with the grace period) before the VM.
        using var trackers = _options.TrackerSocket is { } trackerSocket
            ? RemoteTrackerServer.Start(vm, trackerSocket, log: message => logger.LogInformation("{Message}", message), publish: controller.Publish)
            : null;
        logger.LogInformation("booting {Guest} with {Memory} MiB and {Cpus} vCPU(s)",
            _options.Kernel ?? _options.Image ?? "the built-in guest", _options.MemoryBytes >> 20, _options.Cpus);

        VmOutcome outcome;
        // Stops are wired before the vCPUs start: starting hundreds of threads can take seconds on a busy host.
        Volatile.Write(ref _current, controller);
        _active.Set(controller);
        using (stoppingToken.Register(() => StopGracefully(controller)))
        {
            if (_quitFromConsole) StopNow(controller, "quit from the console (Ctrl-A x)");
            if (_outputFailure is { } failed) vm.End(VmOutcome.OutputFailed(failed));
            input.Attach(vm.ConsoleInput);
            using var watching = new CancellationTokenSource();
            var watcher = Task.CompletedTask;
            try
            {
                try
                {
                    await controller.StartAsync(CancellationToken.None);
                }
                catch (VmTransitionException) when (vm.Outcome is not null)
                {
                    // Stopped before it started (Ctrl-A x, a failed console): nothing ran; Completion has the outcome.
                }
                _firstVmStarted.Set();
                watcher = capture is null ? Task.CompletedTask : Task.Run(() => Watch(vm, capture, clock, watching.Token));
                outcome = await controller.Completion;
            }
            finally
            {
                input.Attach(null);
                Volatile.Write(ref _current, null);
                _active.Set(null);
                watching.Cancel();
                await watcher;
            }
        }
        await _logReady;
        // Bounded: a reader that stalls must not hold up the end of the run.
        console.Flush(ConsoleDrainTimeout);
        if (audit is not null) logger.LogInformation("{Summary}", audit.Summary());
        Report(outcome, vm);
        if (_options.Stats) PrintStatistics(vm, firstVm: prepared is not null);
        return outcome;
    }

    // --stats: where the time went, as a table on stderr (after the vCPU threads ended, so exact).
    private static void PrintStatistics(VirtualMachine vm, bool firstVm)
    {
        var report = vm.CollectExitStatistics();
        Console.Error.Write(report.Format());
        Console.Error.WriteLine(vm.MemslotUsage().Format());
        var earliest = vm.Vcpus.Select(v => v.Counters).Where(c => c.FirstRunTimestamp != 0).MinBy(c => c.FirstRunTimestamp);
        Console.Error.WriteLine(vm.Timeline.Format(ProcessStartTime.Utc, earliest?.FirstRunTimestamp ?? 0, firstVm ? StartupTimeline.Process : null));
        if (earliest is not null) Console.Error.WriteLine($"process CPU time at the first KVM_RUN: {earliest.FirstRunProcessCpuTime.TotalMilliseconds:0.0} ms");
        var memory = ProcessMemory.Read(vm.RamRegions.Select(r => (r.HostAddress, r.Size)).ToList());
        if (memory is { } m)
            Console.Error.WriteLine($"memory: peak RSS {m.PeakResidentBytes / 1048576.0:0.0} MiB, guest RAM resident {m.GuestResidentBytes / 1048576.0:0.0} MiB, VMM without guest RAM {m.VmmPeakBytes / 1048576.0:0.0} MiB");
        // For benchmarks that time the start from outside (the in-process start time has clock-tick resolution).
        if (report.FirstRunUnixNanoseconds is { } first) Console.Error.WriteLine($"first_kvm_run_unix_ns={first}");
    }

    private void StopCurrentVmGracefully()
    {
        if (Volatile.Read(ref _current) is { } controller) StopGracefully(controller);
    }

    // A Linux guest gets Ctrl-Alt-Del and a grace period to shut down; anything else stops at once.
    // Once per VM: a signal handler and the host's stopping token both ask.
    private void StopGracefully(IVmController controller)
    {
        if (Interlocked.Exchange(ref _stopping, controller) == controller) return;
        _ = StopGracefullyAsync(controller);
    }

    // A stop at once. While the vCPUs are still starting (Created), the controller's start request is still being
    // applied and a queued stop would wait for every thread to start (seconds with hundreds of vCPUs on a busy host):
    // the VM is ended directly instead (its start loop checks for that), and the controller applies the end after.
    private static void StopNow(IVmController controller, string reason)
    {
        if (controller.State == VmState.Created) controller.Machine.Stop(reason);
        else _ = controller.StopAsync(reason, CancellationToken.None);
    }

    private async Task StopGracefullyAsync(IVmController controller)
    {
        if (controller.State == VmState.Created)
        {
            StopNow(controller, "the host is shutting down");
            return;
        }
        try
        {
            await controller.SendCtrlAltDelAsync(CancellationToken.None);
        }
        catch (VmTransitionException)
        {
            // No keyboard, or not running (paused, not started yet): it cannot shut down by itself.
            await controller.StopAsync("the host is shutting down", CancellationToken.None);
            return;
        }
        logger.LogInformation("asked the guest to shut down (Ctrl-Alt-Del); stopping it in {Seconds} s otherwise", GuestShutdownGrace.TotalSeconds);
        await Task.Delay(GuestShutdownGrace);
        await controller.StopAsync("the guest did not shut down in time", CancellationToken.None);
    }

    private static readonly TimeSpan GuestShutdownGrace = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan ConsoleDrainTimeout = TimeSpan.FromMilliseconds(250);

    internal static VmConfig BuildConfig(ValidatedRunOptions options, ISerialSink sink, Action<string> warn)
    {
        GuestImage? image = null;
        LinuxBootConfig? linux = null;
        Vmm.Boot.Multiboot.MultibootBootConfig? multiboot = null;
        if (options.MultibootModules is { } modules) multiboot = new Vmm.Boot.Multiboot.MultibootBootConfig(options.Kernel!, modules, options.Cmdline);
        else if (options.Kernel is not null) linux = new LinuxBootConfig(options.Kernel, options.Initrd, options.Cmdline);
        else if (options.Image is not null) image = GuestImage.FromFile(options.Image, options.Entry!.Value, options.Mode);
        else
        {
            if (options.MemoryBytes < BuiltInGuest.MinimumMemory)
                throw new OptionsException(RunSetting.Memory, $"{options.MemoryBytes >> 20}M", $"the built-in guest needs at least {BuiltInGuest.MinimumMemory >> 20}M");
            image = BuiltInGuest.Create();
        }
        return new VmConfig
        {
            MemoryBytes = options.MemoryBytes,
            Cpus = options.Cpus,
            Image = image,
            Linux = linux,
            Multiboot = multiboot,
            DebugExitPort = options.DebugExit.Port,
            DebugExitWidth = options.DebugExit.Width,
            DebugExitQemu = options.DebugExit.Qemu,
            SerialSink = sink,
            KvmPath = options.KvmDevice,
            MemfdBacking = options.Memfd,
            Log = warn,
            Devices = VirtioDeviceAttachments.For(options),
        };
    }

    // Ends the VM when the console shows the expected text, or when the time is up.
    private void Watch(VirtualMachine vm, ExpectSerialSink capture, Stopwatch clock, CancellationToken stop)
    {
        var left = _options.Timeout is { } timeout ? timeout - clock.Elapsed : Timeout.InfiniteTimeSpan;
        if (left != Timeout.InfiniteTimeSpan && left < TimeSpan.Zero) left = TimeSpan.Zero;
        bool matched = _options.Expect is not null
            ? capture.WaitForMatch(left, stop)
            : stop.WaitHandle.WaitOne(left) && false;
        if (stop.IsCancellationRequested) return;
        if (matched)
        {
            vm.End(VmOutcome.ExpectMatched(_options.Expect!));
            return;
        }
        // Say where the guest was stuck before ending it.
        var timedOut = VmOutcome.Timeout(_options.Timeout!.Value, _options.Expect);
        vm.End(timedOut with { Report = vm.DescribeVcpus(TimeSpan.FromSeconds(2)) });
    }

    private int Conclude(VmOutcome outcome, ExpectSerialSink? capture)
    {
        if (outcome.Kind == VmExitKind.Expected) return outcome.ExitCode;
        if (outcome.Kind == VmExitKind.Timeout)
        {
            logger.LogError("{Summary}", outcome.Summary);
            PrintBlock("the console's last lines", Tail(capture));
            PrintBlock("the vCPUs were at", outcome.Report);
            return outcome.ExitCode;
        }
        if (_options.Expect is not null)
        {
            logger.LogError("the VM ended ({Summary}) before the console showed '{Expect}'", outcome.Summary, _options.Expect);
            PrintBlock("the console's last lines", Tail(capture));
            return outcome.ExitCode != 0 ? outcome.ExitCode : VmOutcome.ExpectUnmetCode;
        }
        return outcome.ExitCode;
    }

    // Multi-line diagnostics go to stderr as they are; log lines stay one line each.
    private static void PrintBlock(string title, string? text)
    {
        if (string.IsNullOrEmpty(text)) return;
        Console.Error.WriteLine($"--- {title} ---");
        Console.Error.WriteLine(text.TrimEnd());
        Console.Error.WriteLine("---");
    }

    private static string Tail(ExpectSerialSink? capture) => capture?.Tail(TailLines) ?? "";

    private void WarnIfGuestKernelModeIsEmulated()
    {
        try
        {
            using var system = KvmSystem.Open(_options.KvmDevice);
            var facts = KvmHostFacts.Read(system);
            if (facts.EmulatesGuestKernelMode)
                logger.LogWarning("this KVM ({Modules}) emulates guest kernel mode, about a million instructions per second: " +
                                  "a Linux kernel will boot very slowly here (many minutes). Use a host with kvm_intel or kvm_amd, " +
                                  "or the nested testbed (scripts/testbed/run-in-testbed.sh)", string.Join(", ", facts.VendorModules));
        }
        catch (KvmException)
        {
            // VirtualMachine.Create reports an unusable /dev/kvm with the full explanation.
        }
    }

    private void Report(VmOutcome outcome, VirtualMachine vm)
    {
        long strayReads = vm.PortBus.UnhandledReads + vm.MmioBus.UnhandledReads;
        long strayWrites = vm.PortBus.UnhandledWrites + vm.MmioBus.UnhandledWrites;
        if (strayReads + strayWrites > 0)
            logger.LogInformation("unclaimed guest accesses: {Reads} reads (answered 0xff), {Writes} writes (dropped); last at 0x{Address:x}",
                strayReads, strayWrites, Math.Max(vm.PortBus.LastUnhandledAddress, vm.MmioBus.LastUnhandledAddress));
        if (outcome.Kind is VmExitKind.Fault or VmExitKind.Error)
        {
            logger.LogError("VM ended: {Summary}", outcome.Summary);
            PrintBlock("report", outcome.Report);
        }
        else
            logger.LogInformation("VM ended: {Summary} (exit code {Code})", outcome.Summary, outcome.ExitCode);
    }
}
