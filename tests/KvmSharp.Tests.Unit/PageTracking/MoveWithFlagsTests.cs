using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using Xunit;

namespace KvmSharp.Tests.Unit.PageTracking;

/// <summary>
/// One KVM_SET_USER_MEMORY_REGION may move a slot and change its dirty-logging flag at once; the
/// kernel accepts it, so the carved stack must hand the new flags to the kernel and keep them. The
/// two reproductions of issue 13, exactly as reported, with the kernel view checked after each step.
/// </summary>
public sealed class MoveWithFlagsTests : IDisposable
{
    private const ulong Page = TrackingRig.Page;
    private const uint LogDirty = KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES;
    private const uint ReadOnly = KvmMemFlags.KVM_MEM_READONLY;

    private readonly TrackingRig _rig = new();

    public void Dispose() => _rig.Dispose();

    [Fact]
    public void An_untracked_slot_moved_with_logging_turned_on_keeps_logging_through_a_later_carve()
    {
        var ram = _rig.AddSlot(4, 0x1000, 2);
        _rig.AssertLayout();

        var verdict = _rig.Table.Apply(MemslotRequest.Create(4, 0, 2 * Page, ram.Slot.HostAddress, LogDirty));

        Assert.Equal(MemslotChangeKind.Move, verdict.Kind);
        Assert.Equal([new KernelSlot(4, LogDirty, 0, 2 * Page, ram.Slot.HostAddress)], _rig.Kernel.Slots());
        Assert.Equal([new KernelSlotPiece(4, 0, 0, 2 * Page, ram.Slot.HostAddress, LogDirty)], _rig.Carved.PiecesOf(4));
        _rig.AssertLayout();

        _rig.Tracker.AddGfn(1);

        Assert.Equal([LogDirty, LogDirty | ReadOnly], _rig.Kernel.SlotsByGpa(0).Select(s => s.Flags));
        _rig.AssertLayout();
        Assert.Single(_rig.Table.GetDirtyLog(4)); // the slot logs: no ENOENT
    }

    [Fact]
    public void A_carved_slot_moved_with_logging_turned_on_is_logged_by_the_kernel()
    {
        var ram = _rig.AddSlot(4, 0x1000, 2);
        _rig.Tracker.AddGfn(1);
        _rig.AssertLayout();

        var verdict = _rig.Table.Apply(MemslotRequest.Create(4, 0x10000, 2 * Page, ram.Slot.HostAddress, LogDirty));

        Assert.Equal(MemslotChangeKind.Move, verdict.Kind);
        Assert.Equal([new KernelSlot(4, LogDirty, 0x10000, 2 * Page, ram.Slot.HostAddress)], _rig.Kernel.Slots());
        _rig.AssertLayout();
        _rig.Kernel.MarkDirty(4, 1);
        Assert.Equal([0b10UL], _rig.Table.GetDirtyLog(4));
    }

    [Fact]
    public void A_carved_slot_moved_with_logging_turned_off_stops_logging_in_the_kernel()
    {
        var ram = _rig.AddSlot(4, 0x1000, 4, LogDirty);
        _rig.Tracker.AddGfn(2);

        _rig.Table.Apply(MemslotRequest.Create(4, 0x20000, 4 * Page, ram.Slot.HostAddress, 0));

        Assert.Equal([new KernelSlot(4, 0, 0x20000, 4 * Page, ram.Slot.HostAddress)], _rig.Kernel.Slots());
        _rig.AssertLayout();
        var refused = Assert.Throws<MemslotRefusedException>(() => _rig.Table.GetDirtyLog(4));
        Assert.Equal(Errno.ENOENT, refused.Errno);
    }

    [Fact]
    public void A_move_with_new_flags_that_the_kernel_refuses_part_way_leaves_the_old_layout()
    {
        var ram = _rig.AddSlot(4, 0x1000, 4);
        _rig.Tracker.AddGfn(2);
        var before = _rig.Kernel.Slots();
        _rig.Kernel.FailSetCall(4, Errno.ENOMEM); // three pieces deleted, then the re-create of the moved slot, after the pieces are gone

        var verdict = _rig.Table.TryApply(MemslotRequest.Create(4, 0x20000, 4 * Page, ram.Slot.HostAddress, LogDirty));

        Assert.False(verdict.Accepted);
        Assert.Equal(Errno.ENOMEM, verdict.Errno);
        Assert.Equal(before, _rig.Kernel.Slots());
        Assert.Equal(1, _rig.Tracker.Count(2));
        _rig.AssertLayout();
    }
}
