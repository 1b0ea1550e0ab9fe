namespace KvmSharp.Vmm.Vcpus;

/// <summary>Told, on the vCPU thread, when the instruction whose exit asked for it has completed in KVM (before the guest runs on).</summary>
public interface IInstructionCompletion
{
    void InstructionCompleted(int vcpuId);
}
