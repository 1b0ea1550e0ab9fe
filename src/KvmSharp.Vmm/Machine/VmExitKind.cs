namespace KvmSharp.Vmm.Machine;

/// <summary>How a VM ended.</summary>
public enum VmExitKind
{
    /// <summary>The guest wrote its exit status to the debug-exit port.</summary>
    GuestExit,
    /// <summary>The guest powered off through ACPI (S5 on the sleep-control register).</summary>
    PowerOff,
    /// <summary>The guest asked for a reset (i8042 pulse, port 0x92, or a Linux guest's triple fault with reboot=t).</summary>
    Reboot,
    /// <summary>The console showed the text `--expect` waited for.</summary>
    Expected,
    /// <summary>`--timeout` ran out.</summary>
    Timeout,
    /// <summary>Every vCPU executed HLT with nothing to wake it.</summary>
    Halted,
    /// <summary>An exit that ends the VM: triple fault, entry failure, internal error, system event.</summary>
    Fault,
    /// <summary>The host asked the VM to stop (Ctrl-C, SIGTERM, API).</summary>
    Stopped,
    /// <summary>KvmSharp itself failed (an ioctl error, an exception in a device).</summary>
    Error,
}
