using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using Xunit;

namespace KvmSharp.Tests.Unit.PageTracking;

/// <summary>
/// KernelSlotLayout.Compute cuts a user slot into kernel pieces: maximal untracked runs keep the
/// slot's flags, maximal tracked runs are read-only, the first piece carries the user's id.
/// </summary>
public sealed class KernelSlotLayoutTests
{
    private const ulong Page = TrackingRig.Page;
    private const ulong Gpa = 0x10_0000;      // gfn 0x100
    private const ulong Hva = 0x7f12_3400_0000;
    private const ulong Pages = 16;            // gfns 0x100..0x10f
    private const uint LogDirty = KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES;
    private const uint ReadOnly = KvmMemFlags.KVM_MEM_READONLY;

    private static Memslot Slot(uint flags = 0) => new(7, 0, Gpa, Pages * Page, Hva, flags);

    /// <summary>(first page index, pages, flags) → the exact piece shape.</summary>
    private static (ulong Gpa, ulong Size, ulong Hva, uint Flags) Shape(ulong firstPage, ulong pages, uint flags) =>
        (Gpa + (firstPage * Page), pages * Page, Hva + (firstPage * Page), flags);

    private static List<(ulong Gpa, ulong Size, ulong Hva, uint Flags)> Shapes(IEnumerable<KernelSlotPiece> pieces) =>
        pieces.Select(p => (p.GuestPhysAddr, p.Size, p.HostAddress, p.Flags)).ToList();

    private static void AssertLayout(List<KernelSlotPiece> pieces, params (ulong Gpa, ulong Size, ulong Hva, uint Flags)[] expected)
    {
        Assert.Equal(expected, Shapes(pieces));
        Assert.Equal((ushort)7, pieces[0].KernelId);
        Assert.All(pieces, p => Assert.Equal((ushort)0, p.AddressSpace));
    }

    [Fact]
    public void No_tracked_gfn_gives_one_piece_with_the_users_id_and_flags()
    {
        var pieces = KernelSlotLayout.Compute(Slot(LogDirty), []);

        Assert.Equal([new KernelSlotPiece(7, 0, Gpa, Pages * Page, Hva, LogDirty)], pieces);
    }

    [Fact]
    public void A_tracked_gfn_in_the_middle_gives_untracked_readonly_untracked()
    {
        var pieces = KernelSlotLayout.Compute(Slot(), [0x105]);

        AssertLayout(pieces, Shape(0, 5, 0), Shape(5, 1, ReadOnly), Shape(6, 10, 0));
    }

    [Fact]
    public void Adjacent_tracked_gfns_share_one_readonly_piece()
    {
        var pieces = KernelSlotLayout.Compute(Slot(), [0x106, 0x105, 0x107]);

        AssertLayout(pieces, Shape(0, 5, 0), Shape(5, 3, ReadOnly), Shape(8, 8, 0));
    }

    [Fact]
    public void Separate_tracked_runs_give_separate_readonly_pieces_in_address_order()
    {
        var pieces = KernelSlotLayout.Compute(Slot(), [0x10a, 0x102, 0x103]);

        AssertLayout(pieces, Shape(0, 2, 0), Shape(2, 2, ReadOnly), Shape(4, 6, 0), Shape(10, 1, ReadOnly), Shape(11, 5, 0));
    }

    [Fact]
    public void A_tracked_first_page_is_the_first_piece_and_keeps_the_users_id()
    {
        var pieces = KernelSlotLayout.Compute(Slot(), [0x100]);

        AssertLayout(pieces, Shape(0, 1, ReadOnly), Shape(1, 15, 0));
    }

    [Fact]
    public void A_tracked_last_page_is_the_last_piece()
    {
        var pieces = KernelSlotLayout.Compute(Slot(), [0x10f]);

        AssertLayout(pieces, Shape(0, 15, 0), Shape(15, 1, ReadOnly));
    }

    [Fact]
    public void Every_page_tracked_gives_one_readonly_piece_with_the_users_id()
    {
        var all = Enumerable.Range(0x100, (int)Pages).Select(g => (ulong)g);

        var pieces = KernelSlotLayout.Compute(Slot(), all);

        AssertLayout(pieces, Shape(0, Pages, ReadOnly));
    }

    [Fact]
    public void Gfns_outside_the_slot_are_ignored()
    {
        Assert.Equal(Shapes([new KernelSlotPiece(7, 0, Gpa, Pages * Page, Hva, 0)]), Shapes(KernelSlotLayout.Compute(Slot(), [0x0, 0xff, 0x110, ulong.MaxValue])));

        var pieces = KernelSlotLayout.Compute(Slot(), [0xff, 0x105, 0x110]);
        AssertLayout(pieces, Shape(0, 5, 0), Shape(5, 1, ReadOnly), Shape(6, 10, 0));
    }

    [Fact]
    public void Duplicate_gfns_are_ignored()
    {
        var pieces = KernelSlotLayout.Compute(Slot(), [0x105, 0x105, 0x105]);

        AssertLayout(pieces, Shape(0, 5, 0), Shape(5, 1, ReadOnly), Shape(6, 10, 0));
    }

    [Fact]
    public void Dirty_logging_is_kept_on_every_piece()
    {
        var pieces = KernelSlotLayout.Compute(Slot(LogDirty), [0x100, 0x105, 0x10f]);

        AssertLayout(pieces,
            Shape(0, 1, LogDirty | ReadOnly), Shape(1, 4, LogDirty), Shape(5, 1, LogDirty | ReadOnly),
            Shape(6, 9, LogDirty), Shape(15, 1, LogDirty | ReadOnly));
    }

    [Fact]
    public void A_user_readonly_slot_is_one_readonly_piece_whatever_is_tracked()
    {
        var pieces = KernelSlotLayout.Compute(Slot(ReadOnly | LogDirty), [0x105, 0x10a]);

        Assert.Equal([new KernelSlotPiece(7, 0, Gpa, Pages * Page, Hva, ReadOnly | LogDirty)], pieces);
    }

    [Fact]
    public void A_cap_merges_tracked_runs_across_the_smallest_gap_first()
    {
        // Fine: 0-1 | 2 RO | 3 | 4 RO | 5-9 | 10 RO | 11-15 = 7 pieces; the gap at 3 is the smallest.
        var pieces = KernelSlotLayout.Compute(Slot(LogDirty), [0x102, 0x104, 0x10a], maxPieces: 5);

        AssertLayout(pieces, Shape(0, 2, LogDirty), Shape(2, 3, LogDirty | ReadOnly), Shape(5, 5, LogDirty), Shape(10, 1, LogDirty | ReadOnly), Shape(11, 5, LogDirty));
    }

    [Fact]
    public void A_cap_of_three_keeps_head_and_tail_around_one_readonly_span()
    {
        var pieces = KernelSlotLayout.Compute(Slot(), [0x102, 0x104, 0x10a], maxPieces: 3);

        AssertLayout(pieces, Shape(0, 2, 0), Shape(2, 9, ReadOnly), Shape(11, 5, 0));
    }

    [Fact]
    public void A_cap_of_two_absorbs_the_smaller_of_head_and_tail()
    {
        var pieces = KernelSlotLayout.Compute(Slot(), [0x102, 0x10a], maxPieces: 2);

        AssertLayout(pieces, Shape(0, 11, ReadOnly), Shape(11, 5, 0));
    }

    [Fact]
    public void A_cap_of_one_makes_the_whole_slot_one_readonly_piece_with_the_users_id()
    {
        var pieces = KernelSlotLayout.Compute(Slot(LogDirty), [0x105, 0x10a], maxPieces: 1);

        Assert.Equal([new KernelSlotPiece(7, 0, Gpa, Pages * Page, Hva, LogDirty | ReadOnly)], pieces);
    }

    [Fact]
    public void A_cap_the_fine_carving_fits_in_changes_nothing()
    {
        Assert.Equal(KernelSlotLayout.Compute(Slot(), [0x105]), KernelSlotLayout.Compute(Slot(), [0x105], maxPieces: 3));
        Assert.Equal(KernelSlotLayout.Compute(Slot(), []), KernelSlotLayout.Compute(Slot(), [], maxPieces: 1));
    }

    [Fact]
    public void A_user_readonly_slot_stays_readonly_in_every_piece()
    {
        var pieces = KernelSlotLayout.Compute(Slot(ReadOnly), [0x105]);

        Assert.NotEmpty(pieces);
        Assert.All(pieces, p => Assert.Equal(ReadOnly, p.Flags));
        Assert.Equal(Pages * Page, pieces.Aggregate(0UL, (sum, p) => sum + p.Size));
        Assert.Equal(Gpa, pieces[0].GuestPhysAddr);
        Assert.Equal((ushort)7, pieces[0].KernelId);
    }

    [Fact]
    public void Pieces_of_an_smm_slot_stay_in_its_address_space()
    {
        var smm = new Memslot(7, 1, Gpa, Pages * Page, Hva, 0);

        var pieces = KernelSlotLayout.Compute(smm, [0x105]);

        Assert.Equal(3, pieces.Count);
        Assert.All(pieces, p => Assert.Equal((ushort)1, p.AddressSpace));
        Assert.Equal(7u | (1u << 16), pieces[0].PackedSlot);
    }
}
