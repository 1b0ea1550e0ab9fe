using KvmSharp.Memory.PageTracking;
using KvmSharp.Vmm.Vcpus;

namespace KvmSharp.Vmm.PageTracking;

/// <summary>Routes MMIO exits that land in guest RAM (tracked pages) to the page tracker before the MMIO bus.</summary>
public sealed class TrackedAccessInterceptor(PageTracker tracker) : IMmioInterceptor
{
    public bool TryHandle(int vcpuId, int addressSpace, ulong gpa, Span<byte> data, bool isWrite) =>
        tracker.HandleTrappedAccess(vcpuId, addressSpace, gpa, data, isWrite);
}
