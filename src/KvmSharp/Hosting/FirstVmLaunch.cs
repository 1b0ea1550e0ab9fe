using KvmSharp.Cli;
using KvmSharp.Devices.Serial;
using KvmSharp.Terminal;
using KvmSharp.Vmm.Machine;

namespace KvmSharp.Hosting;

/// <summary>
/// The first VM's console and machine, made on their own thread as soon as the options are valid, while the host
/// is built: neither needs the host, whose build (DI container, logging) is most of the start-up under NativeAOT.
/// The VM is not started here: <see cref="VmService"/> takes it over and starts it once the terminal, signals and
/// log are set up, as before. A failure is kept and raised there, where a run's failures are reported.
/// </summary>
public sealed class FirstVmLaunch
{
    private readonly Task<FirstVm> _ready;
    private readonly object _logLock = new();
    private List<string>? _earlyWarnings = new();
    private Action<string>? _warn;

    private FirstVmLaunch(ValidatedRunOptions options)
    {
        _ready = Task.Factory.StartNew(() => Launch(options), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    /// <summary>Begin opening the console and creating the first VM on another thread.</summary>
    public static FirstVmLaunch Begin(ValidatedRunOptions options) => new(options);

    /// <summary>The console and VM, once made; <see cref="FirstVm.Failure"/> says why not.</summary>
    public Task<FirstVm> Ready => _ready;

    /// <summary>Where the VM's warnings go from now on; those raised before are passed on first.</summary>
    public void SetWarningLog(Action<string> warn)
    {
        List<string> early;
        lock (_logLock)
        {
            early = _earlyWarnings ?? [];
            _earlyWarnings = null;
            _warn = warn;
        }
        foreach (var message in early) warn(message);
    }

    private void Warn(string message)
    {
        Action<string>? warn;
        lock (_logLock)
        {
            if (_earlyWarnings is not null)
            {
                _earlyWarnings.Add(message);
                return;
            }
            warn = _warn;
        }
        warn?.Invoke(message);
    }

    private FirstVm Launch(ValidatedRunOptions options)
    {
        StreamSerialSink? console = null;
        ExpectSerialSink? capture = null;
        try
        {
            console = SerialOutput.Open(options.Serial);
            capture = options.Expect is not null || options.Timeout is not null ? new ExpectSerialSink(options.Expect) : null;
            ISerialSink sink = capture is null ? console : new TeeSerialSink(console, capture);
            var vm = VirtualMachine.Create(VmService.BuildConfig(options, sink, Warn));
            return new FirstVm(console, capture, sink, vm, null);
        }
        catch (Exception e)
        {
            return new FirstVm(console, capture, null, null, e);
        }
    }
}
