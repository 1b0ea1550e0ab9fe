using System.Diagnostics;

namespace KvmSharp.Vmm.Statistics;

/// <summary>
/// One vCPU's exit statistics: counts and handler time per exit reason and per bus range, and time spent
/// inside KVM_RUN. Preallocated, written only by the vCPU's own thread (plain stores: the exit path takes no
/// lock and allocates nothing), read by others as approximate live values and exactly once the thread ended.
/// </summary>
public sealed class VcpuExitCounters
{
    /// <summary>Exit reasons tracked one by one; higher values share the last slot.</summary>
    public const int ReasonSlots = 64;

    /// <summary>Bus range ids tracked one by one per bus; higher ids share <see cref="OverflowRange"/>.</summary>
    public const int RangeSlots = 128;

    /// <summary>Slot for accesses no device claimed.</summary>
    public const int UnclaimedRange = RangeSlots;

    /// <summary>Slot for range ids at or above <see cref="RangeSlots"/>.</summary>
    public const int OverflowRange = RangeSlots + 1;

    /// <summary>Slot for MMIO exits the interceptor (page tracking) handled before the bus.</summary>
    public const int InterceptedRange = RangeSlots + 2;

    private const int RangeArrayLength = RangeSlots + 3;

    private readonly long[] _reasonCounts = new long[ReasonSlots];
    private readonly long[] _reasonTicks = new long[ReasonSlots];
    private readonly long[][] _rangeCounts = [new long[RangeArrayLength], new long[RangeArrayLength]];
    private readonly long[][] _rangeTicks = [new long[RangeArrayLength], new long[RangeArrayLength]];
    private long _runCount;
    private long _runTicks;
    private long _firstRunTimestamp;
    private long _firstRunCpuTicks;
    private ExitBus _pendingBus = ExitBus.None;
    private int _pendingRange;

    public VcpuExitCounters(int vcpuId) => VcpuId = vcpuId;

    public int VcpuId { get; }

    /// <summary>KVM_RUN calls that returned (exits and interruptions).</summary>
    public long RunCount => Volatile.Read(ref _runCount);

    /// <summary>Stopwatch ticks spent inside KVM_RUN (guest time plus the kernel's own exit handling).</summary>
    public long RunTicks => Volatile.Read(ref _runTicks);

    /// <summary><see cref="Stopwatch.GetTimestamp"/> at the first KVM_RUN, 0 before it.</summary>
    public long FirstRunTimestamp => Volatile.Read(ref _firstRunTimestamp);

    public long ReasonCount(int reason) => Volatile.Read(ref _reasonCounts[ReasonSlot(reason)]);
    public long ReasonTicks(int reason) => Volatile.Read(ref _reasonTicks[ReasonSlot(reason)]);

    /// <summary>Exits on <paramref name="bus"/> that went to range slot <paramref name="slot"/> (a range id or one of the shared slots).</summary>
    public long RangeCount(ExitBus bus, int slot) => Volatile.Read(ref _rangeCounts[BusIndex(bus)][slot]);
    public long RangeTicks(ExitBus bus, int slot) => Volatile.Read(ref _rangeTicks[BusIndex(bus)][slot]);

    /// <summary>CPU time the whole process had used at this vCPU's first KVM_RUN (zero before it).</summary>
    public TimeSpan FirstRunProcessCpuTime => TimeSpan.FromTicks(Volatile.Read(ref _firstRunCpuTicks));

    /// <summary>Called right before KVM_RUN; returns the timestamp to hand to <see cref="RunReturned"/>.</summary>
    public long RunStarting()
    {
        long now = Stopwatch.GetTimestamp();
        if (_firstRunTimestamp == 0)
        {
            // Once per vCPU: CPU time is what a loaded host cannot inflate, unlike the wall-clock start.
            Volatile.Write(ref _firstRunCpuTicks, Environment.CpuUsage.TotalTime.Ticks);
            Volatile.Write(ref _firstRunTimestamp, now);
        }
        return now;
    }

    /// <summary>Called when KVM_RUN returned; returns the timestamp the exit handler starts at.</summary>
    public long RunReturned(long startedAt)
    {
        long now = Stopwatch.GetTimestamp();
        _runCount++;
        _runTicks += now - startedAt;
        return now;
    }

    /// <summary>Called by the exit dispatcher: the exit being handled went to this range of that bus (-1: unclaimed).</summary>
    public void NoteRange(ExitBus bus, int rangeId)
    {
        _pendingBus = bus;
        _pendingRange = rangeId < 0 ? UnclaimedRange : rangeId < RangeSlots ? rangeId : OverflowRange;
    }

    /// <summary>Called by the exit dispatcher for an MMIO exit the interceptor took.</summary>
    public void NoteIntercepted()
    {
        _pendingBus = ExitBus.Mmio;
        _pendingRange = InterceptedRange;
    }

    /// <summary>The exit handler for <paramref name="reason"/> finished; charges its time to the reason and to the range noted, if any.</summary>
    public void ExitHandled(uint reason, long handlerStartedAt)
    {
        long ticks = Stopwatch.GetTimestamp() - handlerStartedAt;
        int slot = ReasonSlot((int)Math.Min(reason, int.MaxValue));
        _reasonCounts[slot]++;
        _reasonTicks[slot] += ticks;
        if (_pendingBus == ExitBus.None) return;
        int bus = BusIndex(_pendingBus);
        _rangeCounts[bus][_pendingRange]++;
        _rangeTicks[bus][_pendingRange] += ticks;
        _pendingBus = ExitBus.None;
    }

    private static int ReasonSlot(int reason) => reason is >= 0 and < ReasonSlots ? reason : ReasonSlots - 1;

    private static int BusIndex(ExitBus bus) => bus switch
    {
        ExitBus.Port => 0,
        ExitBus.Mmio => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(bus), bus, "no counters for this bus"),
    };
}
