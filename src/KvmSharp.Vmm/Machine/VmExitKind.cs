namespace KvmSharp.Vmm.Machine;

/// <summary>How a VM ended.</summary>
public enum VmExitKind
{
    /// <summary>The guest wrote its exit status to the debug-exit port.</summary>
    GuestExit,
    /// <summary>Every vCPU executed HLT with nothing to wake it.</summary>
    Halted,
    /// <summary>An exit that ends the VM: triple fault, entry failure, internal error, system event.</summary>
    Fault,
    /// <summary>The host asked the VM to stop (Ctrl-C, SIGTERM, API).</summary>
    Stopped,
    /// <summary>KvmSharp itself failed (an ioctl error, an exception in a device).</summary>
    Error,
}
