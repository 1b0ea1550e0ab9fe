namespace KvmSharp.Memory.PageTracking;

/// <summary>Looks at the vCPU behind a trapped write (the VMM implements it with the vCPU's registers).</summary>
public interface ITrappedWriteInspector
{
    /// <summary>
    /// Called on the vCPU's own thread for a trapped write whose bytes equal memory: true when it was
    /// a cmpxchg that failed (KVM's emulator writes the old value back), which is not reported.
    /// </summary>
    bool IsFailedCompareExchange(int vcpuId);
}
