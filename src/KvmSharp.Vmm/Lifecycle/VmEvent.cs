namespace KvmSharp.Vmm.Lifecycle;

/// <summary>
/// One thing that happened to a VM, in order (<see cref="Sequence"/> starts at 1 per VM). Streamed by
/// the API's GET /events as a JSON line, counted in metrics, reported as systemd STATUS=.
/// </summary>
/// <param name="Kind">One of <see cref="VmEventKind"/>'s names.</param>
/// <param name="Detail">Why, in words (the stop reason, the fault's first line, the tracker's name); null when there is nothing to add.</param>
public sealed record VmEvent(long Sequence, DateTimeOffset Time, string Kind, string? Detail);

/// <summary>The kinds of <see cref="VmEvent"/> (the API's names).</summary>
public static class VmEventKind
{
    public const string Started = "started";
    public const string Paused = "paused";
    public const string Resumed = "resumed";
    public const string Reboot = "reboot";
    public const string Shutdown = "shutdown";
    public const string GuestPanic = "guest-panic";
    public const string Fault = "fault";
    public const string TrackerAttached = "tracker-attached";
    public const string TrackerDetached = "tracker-detached";
}
