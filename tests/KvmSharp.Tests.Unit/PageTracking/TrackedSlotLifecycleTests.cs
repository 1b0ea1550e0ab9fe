using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using Xunit;

namespace KvmSharp.Tests.Unit.PageTracking;

/// <summary>
/// DELETE and MOVE of a tracked slot through MemslotTable: TrackRemoveRegion fires once, only after
/// the kernel accepted the change; a refused change notifies nothing and keeps counts and pieces;
/// MOVE is refused while notifiers are registered unless the options allow it.
/// </summary>
public sealed class TrackedSlotLifecycleTests : IDisposable
{
    private const ulong Page = TrackingRig.Page;
    private const ulong SlotGpa = 0x10_0000; // gfns 0x100..0x10f
    private const ulong NewGpa = 0x40_0000;  // gfns 0x400..0x40f

    private readonly List<TrackingRig> _rigs = [];

    public void Dispose()
    {
        foreach (var rig in _rigs) rig.Dispose();
    }

    private (TrackingRig Rig, RamSlot Ram, RecordingNotifier Notifier) TrackedSlot(PageTrackOptions? options = null, bool register = true)
    {
        var rig = new TrackingRig(options: options);
        _rigs.Add(rig);
        var ram = rig.AddSlot(1, SlotGpa, 16);
        rig.Tracker.AddGfn(0x105);
        var notifier = new RecordingNotifier();
        if (register) rig.Tracker.Register(notifier);
        return (rig, ram, notifier);
    }

    private static MemslotRequest MoveTo(RamSlot ram, ulong gpa) =>
        MemslotRequest.Create(ram.Slot.Id, gpa, ram.Slot.Size, ram.Slot.HostAddress, ram.Slot.Flags);

    [Fact]
    public void Delete_of_a_tracked_slot_reports_the_region_once_after_the_kernel_removed_it()
    {
        var (rig, ram, notifier) = TrackedSlot();
        var kernelAtNotification = new List<IReadOnlyList<KernelSlot>>();
        notifier.OnRemove = (_, _) => kernelAtNotification.Add(rig.Kernel.Slots());

        rig.Table.Apply(MemslotRequest.Delete(1));

        Assert.Equal([(0x100UL, 16UL)], notifier.Removals);
        var kernelThen = Assert.Single(kernelAtNotification);
        Assert.Empty(kernelThen); // every piece was gone when the hook ran
        Assert.Empty(rig.Tracker.TrackedGfns);
        Assert.Empty(rig.Carved.PiecesOf(1));

        // The counts went with the slot: the same range created again is untracked and whole.
        rig.Table.Apply(MemslotRequest.Create(1, SlotGpa, 16 * Page, ram.Slot.HostAddress));
        Assert.Equal(0, rig.Tracker.Count(0x105));
        Assert.Equal([new KernelSlot(1, 0, SlotGpa, 16 * Page, ram.Slot.HostAddress)], rig.Kernel.Slots());
        Assert.True(rig.Write(0, 0x10_5000, [1]));
        Assert.Empty(notifier.Writes);
        Assert.Single(notifier.Removals);
    }

    /// <summary>The delete of the three pieces is 3 calls; whichever the kernel refuses, nothing changes.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void A_delete_the_kernel_refuses_notifies_nothing_and_keeps_counts_and_pieces(int n)
    {
        var (rig, _, notifier) = TrackedSlot();
        var kernelBefore = rig.Kernel.Slots();
        var piecesBefore = rig.Carved.PiecesOf(1);
        var snapshotBefore = rig.Table.Current;
        rig.Kernel.FailSetCall(n, Errno.EIO);

        var verdict = rig.Table.TryApply(MemslotRequest.Delete(1));

        Assert.False(rig.Kernel.FailureArmed);
        Assert.False(verdict.Accepted);
        Assert.True(verdict.RefusedByKernel);
        Assert.Equal(Errno.EIO, verdict.Errno);
        Assert.Empty(notifier.Removals);
        Assert.Same(snapshotBefore, rig.Table.Current);
        Assert.Equal(1, rig.Tracker.Count(0x105));
        Assert.Equal(piecesBefore, rig.Carved.PiecesOf(1));
        Assert.Equal(kernelBefore, rig.Kernel.Slots());
    }

    [Fact]
    public void A_move_is_refused_with_EINVAL_while_a_notifier_is_registered()
    {
        var (rig, ram, notifier) = TrackedSlot();
        var kernelBefore = rig.Kernel.Slots();
        int callsBefore = rig.Kernel.SetCallCount;
        var snapshotBefore = rig.Table.Current;

        var refused = Assert.Throws<MemslotRefusedException>(() => rig.Table.Apply(MoveTo(ram, NewGpa)));

        Assert.Equal(Errno.EINVAL, refused.Errno);
        Assert.False(refused.RefusedByKernel);
        Assert.Same(snapshotBefore, rig.Table.Current);
        Assert.Equal(kernelBefore, rig.Kernel.Slots());
        Assert.Equal(callsBefore, rig.Kernel.SetCallCount);
        Assert.Equal(1, rig.Tracker.Count(0x105));
        Assert.Empty(notifier.Removals);
    }

    [Fact]
    public void An_allowed_move_reports_the_old_region_and_lands_as_one_kernel_slot_with_the_users_id()
    {
        var (rig, ram, notifier) = TrackedSlot(new PageTrackOptions { AllowMoveWithNotifiers = true });

        var verdict = rig.Table.Apply(MoveTo(ram, NewGpa));

        Assert.Equal(MemslotChangeKind.Move, verdict.Kind);
        Assert.Equal([(0x100UL, 16UL)], notifier.Removals);
        Assert.Empty(rig.Tracker.TrackedGfns);
        Assert.Equal(0, rig.Tracker.Count(0x405));
        Assert.Equal([new KernelSlotPiece(1, 0, NewGpa, 16 * Page, ram.Slot.HostAddress, 0)], rig.Carved.PiecesOf(1));
        Assert.Equal([new KernelSlot(1, 0, NewGpa, 16 * Page, ram.Slot.HostAddress)], rig.Kernel.Slots());
    }

    [Fact]
    public void A_move_of_a_tracked_slot_with_no_notifier_registered_lands_as_one_kernel_slot_with_the_users_id()
    {
        var (rig, ram, notifier) = TrackedSlot(register: false);

        rig.Table.Apply(MoveTo(ram, NewGpa));

        Assert.Empty(rig.Tracker.TrackedGfns);
        Assert.Empty(notifier.Removals);
        Assert.Equal([new KernelSlot(1, 0, NewGpa, 16 * Page, ram.Slot.HostAddress)], rig.Kernel.Slots());

        // The model and the kernel agree: the moved slot can be deleted.
        rig.Table.Apply(MemslotRequest.Delete(1));
        Assert.Empty(rig.Kernel.Slots());
    }

    [Fact]
    public void An_allowed_move_of_a_slot_tracked_on_every_page_lands_as_one_writable_kernel_slot()
    {
        var (rig, ram, notifier) = TrackedSlot(new PageTrackOptions { AllowMoveWithNotifiers = true });
        for (ulong gfn = 0x100; gfn < 0x110; gfn++)
            if (gfn != 0x105) rig.Tracker.AddGfn(gfn);
        Assert.Equal([new KernelSlot(1, KvmMemFlags.KVM_MEM_READONLY, SlotGpa, 16 * Page, ram.Slot.HostAddress)], rig.Kernel.Slots());

        var verdict = rig.Table.TryApply(MoveTo(ram, NewGpa));

        Assert.True(verdict.Accepted, verdict.Reason);
        Assert.Equal([(0x100UL, 16UL)], notifier.Removals);
        Assert.Equal([new KernelSlot(1, 0, NewGpa, 16 * Page, ram.Slot.HostAddress)], rig.Kernel.Slots());
    }
}
