namespace KvmSharp.Memory.PageTracking;

/// <summary>Policies of a VM's page tracker.</summary>
public sealed record PageTrackOptions
{
    /// <summary>
    /// Allow memslot MOVE while notifiers are registered (the kernel refuses it since 6.6). A move is
    /// then reported as TrackRemoveRegion of the old range, and the slot's tracking counts are dropped,
    /// as the kernel drops per-slot metadata when a slot moves.
    /// </summary>
    public bool AllowMoveWithNotifiers { get; init; }

    /// <summary>What a notifier that throws does to the VM.</summary>
    public NotifierFaultPolicy OnNotifierFault { get; init; } = NotifierFaultPolicy.Isolate;

    /// <summary>
    /// How <see cref="PageTracker.AddGfn(ulong)"/> traps a gfn. <see cref="TrackingMode.TrapAccesses"/>
    /// is the default because it is the one that matches the kernel (no lost locked update across
    /// vCPUs, no report of a failed cmpxchg); pages holding code or page tables need
    /// <see cref="TrackingMode.TrapWrites"/>, passed per gfn.
    /// </summary>
    public TrackingMode DefaultMode { get; init; } = TrackingMode.TrapAccesses;

    /// <summary>How long a change may wait for the vCPUs to pause before it is refused with EBUSY.</summary>
    public TimeSpan QuiesceTimeout { get; init; } = TimeSpan.FromSeconds(10);
}

public enum NotifierFaultPolicy
{
    /// <summary>Log and count the exception; the VM and the other notifiers go on.</summary>
    Isolate,

    /// <summary>Log and count, then stop the VM.</summary>
    StopVm,
}
