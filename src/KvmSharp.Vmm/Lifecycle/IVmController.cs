using KvmSharp.Vmm.Machine;

namespace KvmSharp.Vmm.Lifecycle;

/// <summary>
/// The one owner of a VM's lifecycle. Every control request (a signal, the API, a page-track carve, a
/// tracker) goes through it and is applied in order on its command channel; a request the state does
/// not allow throws <see cref="VmTransitionException"/> and changes nothing. vCPUs finish the I/O they
/// exited for before they park, so no port or MMIO read is repeated or lost across a pause.
/// </summary>
public interface IVmController : IDisposable
{
    /// <summary>The VM's id (the API's "id"; stable for the VM's life).</summary>
    string Id { get; }

    VmState State { get; }

    /// <summary>The VM it controls (its devices, memory, page tracker).</summary>
    VirtualMachine Machine { get; }

    /// <summary>Created → Running: start the vCPUs.</summary>
    Task StartAsync(CancellationToken cancellation = default);

    /// <summary>
    /// Take a pause lease for <paramref name="holder"/>: when this returns, every vCPU is parked (the VM is
    /// Paused and KVM_KVMCLOCK_CTRL was called) until the lease and every other lease are disposed.
    /// Refused unless Running or Paused; a vCPU that does not park within the controller's deadline fails it.
    /// </summary>
    Task<IPauseLease> PauseAsync(string holder, CancellationToken cancellation = default);

    /// <summary>Ask the guest to shut down as a PC's Ctrl-Alt-Del does; refused when it has no keyboard or is not running.</summary>
    Task SendCtrlAltDelAsync(CancellationToken cancellation = default);

    /// <summary>End the VM (Stopped) with <paramref name="reason"/>; a stopped VM stays stopped (not an error).</summary>
    Task StopAsync(string reason, CancellationToken cancellation = default);

    /// <summary>Completes with the outcome once the VM has ended and its vCPU threads have left KVM_RUN.</summary>
    Task<VmOutcome> Completion { get; }

    /// <summary>
    /// Receive every event from now on, in order, on a thread that is not a vCPU's; the observer must not block.
    /// Dispose the result to stop.
    /// </summary>
    IDisposable Subscribe(Action<VmEvent> observer);

    /// <summary>Add an event that happened outside the controller (a tracker attached, a guest panic seen on the console).</summary>
    void Publish(string kind, string? detail);

    /// <summary>Whether the vCPU threads and the event loop make progress (see <see cref="VmProgress"/>).</summary>
    VmProgress CheckProgress(TimeSpan stallThreshold);
}
