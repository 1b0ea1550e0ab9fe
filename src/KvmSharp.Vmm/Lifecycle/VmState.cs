namespace KvmSharp.Vmm.Lifecycle;

/// <summary>
/// Where a VM is in its life (the API's "state" field uses these names). Created → Running ⇄ Paused → Stopped;
/// Failed when it ended by a fault or an error. Stopped and Failed are final.
/// </summary>
public enum VmState
{
    /// <summary>Made (RAM laid out, guest loaded), no vCPU has run yet.</summary>
    Created,
    Running,
    /// <summary>
    /// Every vCPU parked because at least one lease taken through <see cref="IVmController.PauseAsync"/> is held.
    /// (A page-track carve's or a register dump's brief lease parks the vCPUs too, without changing the state.)
    /// </summary>
    Paused,
    /// <summary>Ended cleanly: guest poweroff/reboot, host stop, --expect met.</summary>
    Stopped,
    /// <summary>Ended by a guest fault, a VMM error or a timeout.</summary>
    Failed,
}
