using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using Xunit;

namespace KvmSharp.Tests.Unit.PageTracking;

/// <summary>
/// KernelSlotLayout.Verify, the kernel-view invariant the tests check after every step: it accepts a
/// right layout and names each way a layout can be wrong.
/// </summary>
public sealed class KernelSlotVerifyTests
{
    private const ulong Page = TrackingRig.Page;
    private const uint LogDirty = KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES;
    private const uint ReadOnly = KvmMemFlags.KVM_MEM_READONLY;
    private static readonly Memslot User = new(7, 0, 0x10_0000, 16 * Page, 0x7f00_0000_0000, LogDirty); // gfns 0x100..0x10f
    private static readonly ulong[] Tracked = [0x105];

    private static List<KernelSlotPiece> RightPieces()
    {
        var pieces = KernelSlotLayout.Compute(User, Tracked);
        return [pieces[0], pieces[1] with { KernelId = 63 }, pieces[2] with { KernelId = 62 }];
    }

    private static List<string> Verify(List<KernelSlotPiece> pieces, List<KernelSlotPiece>? kernel = null, int? count = null, ulong[]? tracked = null, int ids = 64) =>
        KernelSlotLayout.Verify([User], _ => tracked ?? Tracked, _ => pieces, kernel ?? pieces, count ?? (kernel ?? pieces).Count, ids);

    private static void AssertProblem(List<string> problems, string fragment) =>
        Assert.True(problems.Any(p => p.Contains(fragment, StringComparison.Ordinal)), $"expected a problem with '{fragment}', got: [{string.Join(" | ", problems)}]");

    [Fact]
    public void A_right_layout_has_no_problem() => Assert.Empty(Verify(RightPieces()));

    [Fact]
    public void A_gap_between_pieces_is_found()
    {
        var pieces = RightPieces();
        pieces.RemoveAt(1);

        AssertProblem(Verify(pieces), "gap or overlap");
    }

    [Fact]
    public void A_piece_mapping_the_wrong_host_address_is_found()
    {
        var pieces = RightPieces();
        pieces[2] = pieces[2] with { HostAddress = pieces[2].HostAddress + Page };

        AssertProblem(Verify(pieces), "maps hva");
    }

    [Fact]
    public void A_piece_that_lost_the_users_flags_is_found()
    {
        var pieces = RightPieces();
        pieces[1] = pieces[1] with { Flags = ReadOnly }; // the issue's bug: LOG dropped on the carved piece

        AssertProblem(Verify(pieces), "has flags 0x2, the user's are 0x1");
    }

    [Fact]
    public void A_tracked_gfn_on_a_writable_piece_is_found()
    {
        AssertProblem(Verify(RightPieces(), tracked: [0x105, 0x108]), "writable but holds tracked gfns");
    }

    [Fact]
    public void Two_neighbouring_pieces_with_the_same_flags_are_not_the_fewest()
    {
        var pieces = KernelSlotLayout.Compute(User, []);
        var split = new List<KernelSlotPiece>
        {
            pieces[0] with { Size = 8 * Page },
            pieces[0] with { KernelId = 63, GuestPhysAddr = User.GuestPhysAddr + (8 * Page), HostAddress = User.HostAddress + (8 * Page), Size = 8 * Page },
        };

        AssertProblem(Verify(split, tracked: []), "not the fewest pieces");
    }

    [Fact]
    public void A_coarse_piece_when_ids_are_free_is_found_and_accepted_when_they_are_not()
    {
        var coarse = KernelSlotLayout.Compute(User, Tracked, maxPieces: 1);

        AssertProblem(Verify(coarse), "coarser than needed");
        Assert.Empty(Verify(coarse, ids: 2)); // the fine carving needs 3 ids
    }

    [Fact]
    public void A_first_piece_without_the_users_id_is_found()
    {
        var pieces = RightPieces();
        pieces[0] = pieces[0] with { KernelId = 9 };

        AssertProblem(Verify(pieces), "not the user's id");
    }

    [Fact]
    public void A_kernel_that_differs_from_the_pieces_is_found_both_ways()
    {
        var pieces = RightPieces();
        var kernel = pieces.Take(2).Append(pieces[2] with { Flags = 0 }).ToList();

        var problems = Verify(pieces, kernel);

        AssertProblem(problems, "the kernel was never handed kernel slot 62");
        AssertProblem(problems, "which no piece describes");
    }

    [Fact]
    public void A_wrong_kernel_slot_count_is_found()
    {
        AssertProblem(Verify(RightPieces(), count: 1), "KernelSlotCount says 1, the kernel holds 3");
    }

    [Fact]
    public void Two_pieces_on_one_kernel_id_are_found()
    {
        var pieces = RightPieces();
        pieces[2] = pieces[2] with { KernelId = 63 };

        AssertProblem(Verify(pieces), "kernel id 63 (as 0) is used by 2 pieces");
    }
}
