namespace KvmSharp.Vmm.Vcpus;

public enum VcpuState
{
    Created,
    Running,
    Paused,
    /// <summary>HLT with no in-kernel LAPIC: nothing can wake it.</summary>
    Halted,
    /// <summary>Ended by an exit that ends the VM (see <see cref="VcpuRunner.FaultReport"/>).</summary>
    Faulted,
    Stopped,
}
