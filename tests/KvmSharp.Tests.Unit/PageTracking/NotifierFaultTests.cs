using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using Xunit;

namespace KvmSharp.Tests.Unit.PageTracking;

/// <summary>
/// A notifier that throws is isolated: counted, logged with its type name, and the other notifiers
/// still get the event; under <see cref="NotifierFaultPolicy.StopVm"/> the VM is asked to stop.
/// </summary>
public sealed class NotifierFaultTests
{
    private const ulong TrackedGpa = 0x10_5000;

    private sealed class ExplodingNotifier : IPageTrackNotifier
    {
        public int Calls;

        public void TrackWrite(ulong gpa, ReadOnlySpan<byte> bytes)
        {
            Calls++;
            throw new InvalidOperationException("tracker state corrupted");
        }

        public void TrackRemoveRegion(ulong gfn, ulong pageCount)
        {
            Calls++;
            throw new InvalidOperationException("removal went wrong");
        }
    }

    private static (TrackingRig Rig, RecordingNotifier Before, ExplodingNotifier Faulty, RecordingNotifier After) Setup(PageTrackOptions? options = null)
    {
        var rig = new TrackingRig(options: options);
        rig.AddSlot(1, 0x10_0000, 16);
        rig.Tracker.AddGfn(0x105);
        var before = new RecordingNotifier();
        var faulty = new ExplodingNotifier();
        var after = new RecordingNotifier();
        rig.Tracker.Register(before);
        rig.Tracker.Register(faulty);
        rig.Tracker.Register(after);
        return (rig, before, faulty, after);
    }

    [Fact]
    public void A_throwing_notifier_is_counted_logged_by_type_name_and_the_others_still_get_the_write()
    {
        var (owned, before, faulty, after) = Setup();
        using var rig = owned;

        Assert.True(rig.Write(0, TrackedGpa, [1]));
        Assert.True(rig.Write(0, TrackedGpa, [2]));

        Assert.Equal(2, faulty.Calls);
        Assert.Equal(2, rig.Tracker.NotifierFaults);
        Assert.Equal([1, 2], before.Writes.Select(w => (int)w.Bytes[0]));
        Assert.Equal([1, 2], after.Writes.Select(w => (int)w.Bytes[0]));
        Assert.Equal(2, rig.LogLines.Count);
        Assert.All(rig.LogLines, line =>
        {
            Assert.Contains(nameof(ExplodingNotifier), line);
            Assert.Contains("TrackWrite", line);
            Assert.Contains("tracker state corrupted", line);
        });
        Assert.Empty(rig.StopRequests);
        Assert.Equal(3, rig.Tracker.NotifierCount);
    }

    [Fact]
    public void Under_the_StopVm_policy_a_fault_stops_the_vm_and_the_others_still_get_the_write()
    {
        var (owned, before, _, after) = Setup(new PageTrackOptions { OnNotifierFault = NotifierFaultPolicy.StopVm });
        using var rig = owned;

        rig.Write(0, TrackedGpa, [1]);

        var stop = Assert.Single(rig.StopRequests);
        Assert.Contains(nameof(ExplodingNotifier), stop);
        Assert.Equal(1, rig.Tracker.NotifierFaults);
        Assert.Single(before.Writes);
        Assert.Single(after.Writes);
    }

    [Fact]
    public void A_throwing_TrackRemoveRegion_is_isolated_too()
    {
        var (owned, before, faulty, after) = Setup();
        using var rig = owned;

        rig.Table.Apply(MemslotRequest.Delete(1));

        Assert.Equal(1, faulty.Calls);
        Assert.Equal(1, rig.Tracker.NotifierFaults);
        Assert.Equal([(0x100UL, 16UL)], before.Removals);
        Assert.Equal([(0x100UL, 16UL)], after.Removals);
        var line = Assert.Single(rig.LogLines);
        Assert.Contains(nameof(ExplodingNotifier), line);
        Assert.Contains("TrackRemoveRegion", line);
    }
}
