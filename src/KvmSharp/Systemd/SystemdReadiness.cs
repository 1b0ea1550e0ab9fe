namespace KvmSharp.Systemd;

/// <summary>When KvmSharp tells the service manager READY=1.</summary>
public enum SystemdReadiness
{
    /// <summary>
    /// When the VM runs (its controller reached Running: /dev/kvm is open, the guest is loaded, the vCPUs started).
    /// The default, with or without --api-sock: a unit ordered After= this one finds a running guest.
    /// </summary>
    WhenVmRuns,

    /// <summary>
    /// When the host has started (so the API socket accepts), for --wait-for-start: there is no VM until a client
    /// sends InstanceStart, and that client (ordered After= this unit) needs the socket, as with Firecracker.
    /// </summary>
    WhenHostStarts,
}
