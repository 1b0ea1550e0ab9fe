namespace KvmSharp.Vmm.Vcpus;

/// <summary>What the vCPU loop does after an exit has been handled.</summary>
public enum VcpuExitAction
{
    /// <summary>Re-enter the guest.</summary>
    Continue,

    /// <summary>The guest executed HLT with no in-kernel LAPIC to wake it: this vCPU is done.</summary>
    Halt,

    /// <summary>The exit ends the VM (triple fault, entry failure, internal error, system event, unknown exit).</summary>
    Fault,
}
