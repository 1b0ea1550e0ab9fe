namespace KvmSharp.Vmm.Vcpus;

/// <summary>
/// Sees MMIO exits before the MMIO bus, e.g. guest writes to read-only memslots that carry tracked
/// pages. Called on the vCPU thread; must not allocate.
/// </summary>
public interface IMmioInterceptor
{
    /// <summary>True when the access was handled and must not reach the bus.</summary>
    bool TryHandle(int vcpuId, ulong gpa, Span<byte> data, bool isWrite);
}
