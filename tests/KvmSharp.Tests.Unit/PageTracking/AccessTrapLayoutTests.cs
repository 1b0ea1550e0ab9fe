using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using Xunit;

namespace KvmSharp.Tests.Unit.PageTracking;

/// <summary>Access-trapped gfns (TrackingMode.TrapAccesses) have no kernel slot at all; the rest of the slot stays mapped.</summary>
public sealed class AccessTrapLayoutTests : IDisposable
{
    private const ulong SlotGpa = 0x100000;
    private const ulong SlotGfn = SlotGpa >> 12;
    private readonly TrackingRig _rig = new(mode: TrackingMode.TrapAccesses);

    public void Dispose() => _rig.Dispose();

    [Fact]
    public void An_access_trapped_gfn_is_a_gap_between_two_writable_pieces_and_goes_back_to_one_slot()
    {
        _rig.AddSlot(0, SlotGpa, 16);
        _rig.Tracker.AddGfn(SlotGfn + 5);

        var pieces = _rig.Carved.PiecesOf(0);
        Assert.Equal(2, pieces.Count);
        Assert.All(pieces, p => Assert.False(p.IsTrackedCarve));
        Assert.DoesNotContain(pieces, p => p.GuestPhysAddr <= (SlotGfn + 5) << 12 && (SlotGfn + 5) << 12 < p.GuestPhysAddr + p.Size);
        Assert.Equal(0, pieces[0].KernelId);
        Assert.Equal(TrackingMode.TrapAccesses, _rig.Tracker.ModeOf(SlotGfn + 5));
        _rig.AssertLayout();

        _rig.Tracker.RemoveGfn(SlotGfn + 5);
        Assert.Single(_rig.Carved.PiecesOf(0));
        Assert.Null(_rig.Tracker.ModeOf(SlotGfn + 5));
        _rig.AssertLayout();
    }

    [Fact]
    public void Modes_side_by_side_give_a_read_only_piece_next_to_a_gap_and_a_second_add_strengthens_the_mode()
    {
        _rig.AddSlot(0, SlotGpa, 16);
        _rig.Tracker.AddGfn(SlotGfn + 3, TrackingMode.TrapWrites);
        _rig.Tracker.AddGfn(SlotGfn + 4, TrackingMode.TrapAccesses);
        _rig.AssertLayout();
        Assert.Equal([false, true, false], _rig.Carved.PiecesOf(0).Select(p => p.IsTrackedCarve));

        _rig.Tracker.AddGfn(SlotGfn + 3, TrackingMode.TrapAccesses);
        Assert.Equal(2, _rig.Tracker.Count(SlotGfn + 3));
        Assert.Equal(TrackingMode.TrapAccesses, _rig.Tracker.ModeOf(SlotGfn + 3));
        Assert.Equal(2, _rig.Carved.PiecesOf(0).Count);
        _rig.AssertLayout();

        _rig.Tracker.RemoveGfn(SlotGfn + 3);
        Assert.Equal(TrackingMode.TrapAccesses, _rig.Tracker.ModeOf(SlotGfn + 3)); // the stronger mode lasts while tracked
        _rig.Tracker.RemoveGfn(SlotGfn + 3);
        _rig.Tracker.RemoveGfn(SlotGfn + 4);
        Assert.Single(_rig.Carved.PiecesOf(0));
        _rig.AssertLayout();
    }

    [Fact]
    public void The_head_gfn_access_trapped_keeps_the_users_id_on_the_first_mapped_piece()
    {
        _rig.AddSlot(7, SlotGpa, 4);
        _rig.Tracker.AddGfn(SlotGfn);
        var piece = Assert.Single(_rig.Carved.PiecesOf(7));
        Assert.Equal(7, piece.KernelId);
        Assert.Equal(SlotGpa + 0x1000, piece.GuestPhysAddr);
        _rig.AssertLayout();
    }

    [Fact]
    public void A_one_page_slot_fully_access_trapped_has_no_kernel_slot_and_its_id_stays_reserved_until_deleted()
    {
        var limits = new MemslotLimits { SlotsPerAddressSpace = 4 };
        using var rig = new TrackingRig(limits, mode: TrackingMode.TrapAccesses);
        rig.AddSlot(1, SlotGpa, 1);
        rig.Tracker.AddGfn(SlotGfn);
        Assert.Empty(rig.Carved.PiecesOf(1));
        Assert.Empty(rig.Kernel.Slots());
        rig.AssertLayout();

        // Other slots' carving may not take id 1 while the user slot exists.
        rig.AddSlot(0, 0x200000, 16);
        rig.Tracker.AddGfn(0x200 + 2, TrackingMode.TrapWrites);
        rig.Tracker.AddGfn(0x200 + 6, TrackingMode.TrapWrites);
        Assert.DoesNotContain(rig.Kernel.Slots(), k => k.Id == 1);
        rig.AssertLayout();

        rig.Table.Apply(MemslotRequest.Delete(1));
        rig.AssertLayout();
        rig.AddSlot(1, SlotGpa, 1);
        rig.AssertLayout();
    }

    [Fact]
    public void When_ids_run_short_access_trapped_runs_merge_into_a_wider_gap_and_the_layout_stays_right()
    {
        var limits = new MemslotLimits { SlotsPerAddressSpace = 3 };
        using var rig = new TrackingRig(limits, mode: TrackingMode.TrapAccesses);
        rig.AddSlot(0, SlotGpa, 64);
        foreach (ulong page in new ulong[] { 4, 10, 20, 40 }) rig.Tracker.AddGfn(SlotGfn + page);
        Assert.True(rig.Carved.PiecesOf(0).Count <= 3);
        Assert.Equal(1, rig.Carved.CoarsenedSlots);
        rig.AssertLayout();
        foreach (ulong page in new ulong[] { 4, 10, 20, 40 })
            Assert.DoesNotContain(rig.Carved.PiecesOf(0), p => p.GuestPhysAddr <= (SlotGfn + page) << 12 && (SlotGfn + page) << 12 < p.GuestPhysAddr + p.Size);
    }
}
