namespace KvmSharp.Memory.PageTracking;

/// <summary>Ambient facts about the hook being called, read by notifiers that want them (an audit log wants the vCPU).</summary>
public static class PageTrackContext
{
    [ThreadStatic] private static int t_vcpuPlusOne;

    /// <summary>The vCPU whose write is being reported, or -1 outside a TrackWrite hook.</summary>
    public static int CurrentVcpuId => t_vcpuPlusOne - 1;

    internal static void Enter(int vcpuId) => t_vcpuPlusOne = vcpuId + 1;
    internal static void Leave() => t_vcpuPlusOne = 0;
}
