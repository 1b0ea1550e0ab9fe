using KvmSharp.Kvm.Interop;

namespace KvmSharp.Vmm.Vcpus;

/// <summary>
/// Gets KVM_EXIT_INTERNAL_ERROR / KVM_INTERNAL_ERROR_EMULATION exits (an instruction KVM's emulator
/// refused) before they end the VM. Called on the vCPU thread.
/// </summary>
public unsafe interface IEmulationFailureHandler
{
    /// <summary>True when the instruction was completed and the vCPU may resume; false ends the VM (with <paramref name="reason"/> in its report, if given).</summary>
    bool TryHandle(int vcpuId, kvm_run* run, out string? reason);
}
