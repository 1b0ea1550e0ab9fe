namespace KvmSharp.Vmm.Vcpus;

/// <summary>
/// Sees MMIO exits before the MMIO bus, e.g. guest writes to read-only memslots that carry tracked
/// pages. Called on the vCPU thread; must not allocate.
/// </summary>
public interface IMmioInterceptor
{
    /// <summary>True when the access was handled and must not reach the bus.</summary>
    /// <param name="addressSpace">1 when the vCPU was in SMM (kvm_run.flags KVM_RUN_X86_SMM), else 0.</param>
    bool TryHandle(int vcpuId, int addressSpace, ulong gpa, Span<byte> data, bool isWrite);
}
