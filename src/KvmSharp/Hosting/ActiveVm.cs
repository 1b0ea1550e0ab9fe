using KvmSharp.Vmm.Lifecycle;

namespace KvmSharp.Hosting;

/// <summary>
/// The controller of the VM this process runs now (a new one after each reboot with --on-reboot restart;
/// none before InstanceStart or between boots). The API, the systemd notifier and the metrics read it;
/// only <see cref="VmService"/> sets it.
/// </summary>
public sealed class ActiveVm
{
    private IVmController? _current;

    public IVmController? Current => Volatile.Read(ref _current);

    /// <summary>Raised (on the setting thread) when a VM's controller becomes current, before its vCPUs start.</summary>
    public event Action<IVmController>? Attached;

    /// <summary>Raised when the current VM is no longer current (it ended and its run is over).</summary>
    public event Action<IVmController>? Detached;

    internal void Set(IVmController? controller)
    {
        var previous = Interlocked.Exchange(ref _current, controller);
        if (previous is not null && previous != controller) Detached?.Invoke(previous);
        if (controller is not null && controller != previous) Attached?.Invoke(controller);
    }
}
