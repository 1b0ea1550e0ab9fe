namespace KvmSharp.Vmm.Trackers.Remote;

/// <summary>
/// The tracker protocol's numbers (docs/tracker-protocol.md is the reference): socket messages are a
/// 16-byte header {u32 type, u32 payload length, u64 id} and a payload, little-endian; events travel in
/// a shared-memory ring (<see cref="TrackerRingLayout"/>).
/// </summary>
public static class TrackerWire
{
    public const uint Version = 1;
    public const int HeaderBytes = 16;
    public const int MaxPayloadBytes = 1 << 20;
    public const int RegionBytes = 32;
    public const int RangeBytes = 16;

    // Message types.
    public const uint Hello = 1;
    public const uint Subscribe = 2;
    public const uint AddGfns = 3;
    public const uint RemoveGfns = 4;
    public const uint Reply = 5;
    public const uint Detached = 6;

    // SUBSCRIBE modes.
    public const uint Asynchronous = 0;
    public const uint Synchronous = 1;

    // ADD_GFNS modes (TrackingMode): 0 the VMM's default, 1 trap writes, 2 trap accesses.
    public const uint DefaultMode = 0, TrapWrites = 1, TrapAccesses = 2;

    public const uint DefaultDeadlineMilliseconds = 1000;
    public const uint MaxDeadlineMilliseconds = 60_000;
    public const uint DefaultRingBytes = 1 << 20;
    public const uint MinRingBytes = 1 << 16;
    public const uint MaxRingBytes = 1 << 26;

    /// <summary>Most ranges in one ADD_GFNS/REMOVE_GFNS (the payload limit).</summary>
    public const int MaxRanges = (MaxPayloadBytes - 8) / RangeBytes;
}
