namespace KvmSharp.Memory.PageTracking;

/// <summary>Ambient facts about the hook being called, read by notifiers that want them (an audit log wants the vCPU).</summary>
public static class PageTrackContext
{
    [ThreadStatic] private static int t_vcpuPlusOne;
    [ThreadStatic] private static int t_addressSpace;

    /// <summary>The vCPU whose write is being reported, or -1 outside a TrackWrite hook.</summary>
    public static int CurrentVcpuId => t_vcpuPlusOne - 1;

    /// <summary>The address space (0 normal, 1 SMM) of the write being reported; 0 outside a TrackWrite hook.</summary>
    public static int CurrentAddressSpace => t_addressSpace;

    internal static void Enter(int vcpuId, int addressSpace = 0)
    {
        t_vcpuPlusOne = vcpuId + 1;
        t_addressSpace = addressSpace;
    }

    internal static void Leave()
    {
        t_vcpuPlusOne = 0;
        t_addressSpace = 0;
    }
}
