using KvmSharp.Memory.PageTracking;
using Xunit;

namespace KvmSharp.Tests.Unit.PageTracking;

/// <summary>
/// register/unregister of notifier nodes: no duplicates, no unknown removals, an unregistered node
/// hears nothing more, and a node may unregister itself from its own hook.
/// </summary>
public sealed class NotifierRegistrationTests : IDisposable
{
    private const ulong TrackedGpa = 0x10_5000;

    private readonly TrackingRig _rig = new();

    public NotifierRegistrationTests()
    {
        _rig.AddSlot(1, 0x10_0000, 16);
        _rig.Tracker.AddGfn(0x105);
    }

    public void Dispose() => _rig.Dispose();

    [Fact]
    public void Registering_the_same_notifier_twice_is_an_ArgumentException()
    {
        var notifier = new RecordingNotifier();
        _rig.Tracker.Register(notifier);

        Assert.Throws<ArgumentException>(() => _rig.Tracker.Register(notifier));

        Assert.Equal(1, _rig.Tracker.NotifierCount);
        _rig.Write(0, TrackedGpa, [1]);
        Assert.Equal(1, notifier.WriteCount);
    }

    [Fact]
    public void Unregistering_an_unknown_notifier_is_an_ArgumentException()
    {
        _rig.Tracker.Register(new RecordingNotifier());

        Assert.Throws<ArgumentException>(() => _rig.Tracker.Unregister(new RecordingNotifier()));

        Assert.Equal(1, _rig.Tracker.NotifierCount);
    }

    [Fact]
    public void An_unregistered_notifier_is_not_called_again()
    {
        var gone = new RecordingNotifier();
        var staying = new RecordingNotifier();
        _rig.Tracker.Register(gone);
        _rig.Tracker.Register(staying);
        _rig.Write(0, TrackedGpa, [1]);

        _rig.Tracker.Unregister(gone);
        _rig.Write(0, TrackedGpa, [2]);

        Assert.Equal([1], gone.Writes.Select(w => (int)w.Bytes[0]));
        Assert.Equal([1, 2], staying.Writes.Select(w => (int)w.Bytes[0]));
        Assert.Equal(1, _rig.Tracker.NotifierCount);
        Assert.Throws<ArgumentException>(() => _rig.Tracker.Unregister(gone));
    }

    [Fact]
    public void A_notifier_unregistering_itself_from_its_hook_does_not_deadlock_and_later_ones_still_get_the_write()
    {
        var self = new RecordingNotifier();
        self.OnWrite = (_, _) => _rig.Tracker.Unregister(self);
        var later = new RecordingNotifier();
        _rig.Tracker.Register(self);
        _rig.Tracker.Register(later);

        bool handled = false;
        var vcpu = new Thread(() => handled = _rig.Write(0, TrackedGpa, [1])) { IsBackground = true };
        vcpu.Start();
        Assert.True(vcpu.Join(TimeSpan.FromSeconds(5)), "a notifier unregistering itself from TrackWrite deadlocked");
        Assert.True(handled);
        _rig.Write(0, TrackedGpa, [2]);

        Assert.Equal([1], self.Writes.Select(w => (int)w.Bytes[0]));
        Assert.Equal([1, 2], later.Writes.Select(w => (int)w.Bytes[0]));
        Assert.Equal(1, _rig.Tracker.NotifierCount);
        Assert.Equal(0, _rig.Tracker.NotifierFaults);
    }

    [Fact]
    public void A_notifier_can_register_again_after_unregistering()
    {
        var notifier = new RecordingNotifier();
        _rig.Tracker.Register(notifier);
        _rig.Tracker.Unregister(notifier);

        _rig.Tracker.Register(notifier);
        _rig.Write(0, TrackedGpa, [3]);

        Assert.Equal([3], notifier.Writes.Select(w => (int)w.Bytes[0]));
    }
}
