using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using Xunit;

namespace KvmSharp.Tests.Unit.Memory;

/// <summary>
/// MemslotRules.Check against the checks of __kvm_set_memory_region (virt/kvm/kvm_main.c) and
/// kvm_arch_prepare_memory_region (x86): each refusal with the errno the kernel returns, and the
/// change kind the kernel derives for every accepted request.
/// </summary>
public sealed class MemslotRulesTests
{
    private const ulong Page = 0x1000;
    private const ulong Hva = 0x7f00_0000_0000;
    private const uint LogDirty = KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES;
    private const uint ReadOnly = KvmMemFlags.KVM_MEM_READONLY;

    private static readonly MemslotLimits Defaults = new();

    private static MemslotSnapshot Snapshot(MemslotLimits limits, params Memslot[] slots)
    {
        var snapshot = MemslotSnapshot.Empty(limits.AddressSpaces);
        foreach (var slot in slots) snapshot = snapshot.With(null, slot);
        return snapshot;
    }

    private static MemslotVerdict Check(MemslotRequest request, params Memslot[] existing) =>
        MemslotRules.Check(Snapshot(Defaults, existing), Defaults, request);

    private static MemslotVerdict Check(MemslotLimits limits, MemslotRequest request, params Memslot[] existing) =>
        MemslotRules.Check(Snapshot(limits, existing), limits, request);

    private static void AssertRefused(int errno, MemslotVerdict verdict, string reasonFragment)
    {
        Assert.False(verdict.Accepted, $"expected errno {errno}, got an accepted {verdict.Kind}");
        Assert.Equal(errno, verdict.Errno);
        Assert.NotNull(verdict.Reason);
        Assert.Contains(reasonFragment, verdict.Reason, StringComparison.Ordinal);
        Assert.Null(verdict.New);
    }

    private static void AssertAccepted(MemslotChangeKind kind, MemslotVerdict verdict)
    {
        Assert.True(verdict.Accepted, $"expected {kind}, got errno {verdict.Errno}: {verdict.Reason}");
        Assert.Equal(0, verdict.Errno);
        Assert.Null(verdict.Reason);
        Assert.Equal(kind, verdict.Kind);
    }

    // ---- slot id -------------------------------------------------------------------------------

    [Theory]
    [InlineData(32764)]
    [InlineData(32765)]
    [InlineData(32767)]
    [InlineData(65535)]
    public void Slot_id_at_or_above_KVM_CAP_NR_MEMSLOTS_is_EINVAL(int id)
    {
        var verdict = Check(MemslotRequest.Create((ushort)id, 0, Page, Hva));

        AssertRefused(Errno.EINVAL, verdict, $"slot id {id}");
        Assert.Contains("KVM_CAP_NR_MEMSLOTS", verdict.Reason!, StringComparison.Ordinal);
    }

    [Fact]
    public void Highest_slot_id_below_the_limit_is_accepted()
    {
        AssertAccepted(MemslotChangeKind.Create, Check(MemslotRequest.Create(32763, 0, Page, Hva)));
    }

    [Fact]
    public void Slot_id_limit_comes_from_the_limits_not_a_constant()
    {
        var limits = new MemslotLimits { SlotsPerAddressSpace = 8 };

        AssertRefused(Errno.EINVAL, Check(limits, MemslotRequest.Create(8, 0, Page, Hva)), "slot id 8");
        AssertAccepted(MemslotChangeKind.Create, Check(limits, MemslotRequest.Create(7, 0, Page, Hva)));
    }

    // ---- flags ---------------------------------------------------------------------------------

    public static TheoryData<int> UnknownFlagBits()
    {
        var data = new TheoryData<int>();
        for (int bit = 2; bit < 32; bit++) data.Add(bit);
        return data;
    }

    [Theory]
    [MemberData(nameof(UnknownFlagBits))]
    public void Each_unknown_flag_bit_is_EINVAL(int bit)
    {
        uint flags = 1u << bit;

        var verdict = Check(MemslotRequest.Create(1, 0, Page, Hva, flags));

        AssertRefused(Errno.EINVAL, verdict, $"flags 0x{flags:x}");
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(LogDirty)]
    [InlineData(ReadOnly)]
    [InlineData(LogDirty | ReadOnly)]
    public void Known_flags_are_accepted_when_the_host_offers_them(uint flags)
    {
        var verdict = Check(MemslotRequest.Create(1, 0, Page, Hva, flags));

        AssertAccepted(MemslotChangeKind.Create, verdict);
        Assert.Equal(flags, verdict.New!.Value.Flags);
    }

    [Fact]
    public void Readonly_is_EINVAL_without_KVM_CAP_READONLY_MEM()
    {
        var limits = new MemslotLimits { ValidFlags = LogDirty };

        AssertRefused(Errno.EINVAL, Check(limits, MemslotRequest.Create(1, 0, Page, Hva, ReadOnly)), "flags 0x2");
        AssertAccepted(MemslotChangeKind.Create, Check(limits, MemslotRequest.Create(1, 0, Page, Hva, LogDirty)));
    }

    // ---- alignment -----------------------------------------------------------------------------

    [Theory]
    [InlineData(1UL)]
    [InlineData(0x800UL)]
    [InlineData(0xfffUL)]
    public void Unaligned_memory_size_is_EINVAL(ulong misalignment)
    {
        AssertRefused(Errno.EINVAL, Check(MemslotRequest.Create(1, 0, Page + misalignment, Hva)), "memory_size");
    }

    [Theory]
    [InlineData(1UL)]
    [InlineData(0x800UL)]
    [InlineData(0xfffUL)]
    public void Unaligned_guest_phys_addr_is_EINVAL(ulong misalignment)
    {
        AssertRefused(Errno.EINVAL, Check(MemslotRequest.Create(1, 0x10_0000 + misalignment, Page, Hva)), "guest_phys_addr");
    }

    [Theory]
    [InlineData(1UL)]
    [InlineData(0x800UL)]
    [InlineData(0xfffUL)]
    public void Unaligned_userspace_addr_is_EINVAL(ulong misalignment)
    {
        AssertRefused(Errno.EINVAL, Check(MemslotRequest.Create(1, 0, Page, Hva + misalignment)), "userspace_addr");
    }

    // ---- host range (access_ok) ----------------------------------------------------------------

    [Fact]
    public void Host_range_ending_exactly_at_the_user_address_limit_is_accepted()
    {
        ulong size = 16 * Page;
        var request = MemslotRequest.Create(1, 0, size, Defaults.UserAddressLimit - size);

        AssertAccepted(MemslotChangeKind.Create, Check(request));
    }

    [Fact]
    public void Host_range_one_page_past_the_user_address_limit_is_EINVAL()
    {
        ulong size = 16 * Page;
        var request = MemslotRequest.Create(1, 0, size, Defaults.UserAddressLimit - size + Page);

        AssertRefused(Errno.EINVAL, Check(request), "leaves the user address space");
    }

    [Fact]
    public void Host_range_that_wraps_the_address_space_is_EINVAL()
    {
        var request = MemslotRequest.Create(1, 0, 2 * Page, 0xffff_ffff_ffff_f000);

        AssertRefused(Errno.EINVAL, Check(request), "leaves the user address space");
    }

    [Fact]
    public void Size_larger_than_the_user_address_space_is_EINVAL()
    {
        var limits = new MemslotLimits { UserAddressLimit = 1UL << 30 };
        var request = MemslotRequest.Create(1, 0, (1UL << 30) + Page, 0);

        AssertRefused(Errno.EINVAL, Check(limits, request), "leaves the user address space");
    }

    [Fact]
    public void User_address_limit_comes_from_the_limits()
    {
        var limits = new MemslotLimits { UserAddressLimit = 1UL << 30 };

        AssertRefused(Errno.EINVAL, Check(limits, MemslotRequest.Create(1, 0, Page, 1UL << 30)), "leaves the user address space");
        AssertAccepted(MemslotChangeKind.Create, Check(limits, MemslotRequest.Create(1, 0, Page, (1UL << 30) - Page)));
    }

    // ---- address space -------------------------------------------------------------------------

    [Fact]
    public void Smm_address_space_without_multi_address_space_is_EINVAL_and_names_both_caps()
    {
        var verdict = Check(MemslotRequest.Create(1, 0, Page, Hva, addressSpace: 1));

        AssertRefused(Errno.EINVAL, verdict, "KVM_CAP_MULTI_ADDRESS_SPACE=1");
        Assert.Contains("KVM_CAP_X86_SMM=0", verdict.Reason!, StringComparison.Ordinal);
    }

    [Fact]
    public void Smm_refusal_reports_the_hosts_smm_capability()
    {
        var limits = new MemslotLimits { AddressSpaces = 1, SmmSupported = true };

        var verdict = Check(limits, MemslotRequest.Create(1, 0, Page, Hva, addressSpace: 1));

        AssertRefused(Errno.EINVAL, verdict, "KVM_CAP_X86_SMM=1");
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(0xffff)]
    public void Address_space_at_or_above_KVM_CAP_MULTI_ADDRESS_SPACE_is_EINVAL(int addressSpace)
    {
        var limits = new MemslotLimits { AddressSpaces = 2, SmmSupported = true };

        var verdict = Check(limits, MemslotRequest.Create(1, 0, Page, Hva, addressSpace: (ushort)addressSpace));

        AssertRefused(Errno.EINVAL, verdict, $"address space {addressSpace}");
        Assert.Contains("KVM_CAP_MULTI_ADDRESS_SPACE=2", verdict.Reason!, StringComparison.Ordinal);
    }

    [Fact]
    public void Smm_address_space_is_accepted_when_the_vm_has_two()
    {
        var limits = new MemslotLimits { AddressSpaces = 2, SmmSupported = true };

        var verdict = Check(limits, MemslotRequest.Create(1, 0, Page, Hva, addressSpace: 1));

        AssertAccepted(MemslotChangeKind.Create, verdict);
        Assert.Equal((ushort)1, verdict.New!.Value.AddressSpace);
    }

    // ---- guest range ---------------------------------------------------------------------------

    [Theory]
    [InlineData(0xffff_ffff_ffff_f000UL, 0x2000UL)]
    [InlineData(0xffff_ffff_ffff_f000UL, 0x1000UL)] // ends exactly at 2^64: the sum wraps to 0
    [InlineData(0x8000_0000_0000_0000UL, 0x8000_0000_0000_0000UL)]
    public void Guest_range_that_wraps_is_EINVAL(ulong gpa, ulong size)
    {
        var limits = new MemslotLimits { UserAddressLimit = ulong.MaxValue };

        AssertRefused(Errno.EINVAL, Check(limits, MemslotRequest.Create(1, gpa, size, 0)), "wraps around");
    }

    [Fact]
    public void More_than_2_pow_31_minus_1_pages_is_EINVAL()
    {
        ulong size = (MemslotLimits.MaxPagesPerSlot + 1) * Page;

        AssertRefused(Errno.EINVAL, Check(MemslotRequest.Create(1, 0, size, 0)), "KVM_MEM_MAX_NR_PAGES");
    }

    [Fact]
    public void Exactly_2_pow_31_minus_1_pages_is_accepted()
    {
        ulong size = MemslotLimits.MaxPagesPerSlot * Page;

        var verdict = Check(MemslotRequest.Create(1, 0, size, 0));

        AssertAccepted(MemslotChangeKind.Create, verdict);
        Assert.Equal(MemslotLimits.MaxPagesPerSlot, verdict.New!.Value.PageCount);
    }

    [Fact]
    public void Last_gfn_at_MaxGfn_is_accepted_and_one_past_is_EINVAL()
    {
        var limits = new MemslotLimits { MaxGfn = 0xfffff }; // 4 GiB of guest physical space
        ulong size = 16 * Page;
        ulong top = (limits.MaxGfn + 1) * Page;

        AssertAccepted(MemslotChangeKind.Create, Check(limits, MemslotRequest.Create(1, top - size, size, Hva)));
        AssertRefused(Errno.EINVAL, Check(limits, MemslotRequest.Create(1, top - size + Page, size, Hva)), "highest gfn");
    }

    [Fact]
    public void Move_beyond_MaxGfn_is_EINVAL()
    {
        var limits = new MemslotLimits { MaxGfn = 0xfffff };
        var slot = new Memslot(1, 0, 0, 16 * Page, Hva, 0);

        var verdict = Check(limits, new MemslotRequest(1, 0, 0xffff_8000, 16 * Page, Hva), slot);

        AssertRefused(Errno.EINVAL, verdict, "highest gfn");
    }

    [Fact]
    public void Default_MaxGfn_allows_a_slot_just_below_2_pow_52()
    {
        var request = MemslotRequest.Create(1, (1UL << 52) - Page, Page, Hva);

        AssertAccepted(MemslotChangeKind.Create, Check(request));
        AssertRefused(Errno.EINVAL, Check(MemslotRequest.Create(1, 1UL << 52, Page, Hva)), "highest gfn");
    }

    // ---- changes to an existing slot -----------------------------------------------------------

    [Fact]
    public void Deleting_a_missing_slot_is_EINVAL()
    {
        var other = new Memslot(2, 0, 0, Page, Hva, 0);

        AssertRefused(Errno.EINVAL, Check(MemslotRequest.Delete(1), other), "does not exist");
    }

    [Fact]
    public void Deleting_a_slot_of_another_address_space_is_EINVAL()
    {
        var limits = new MemslotLimits { AddressSpaces = 2, SmmSupported = true };
        var smmSlot = new Memslot(1, 1, 0, Page, Hva, 0);

        AssertRefused(Errno.EINVAL, Check(limits, MemslotRequest.Delete(1, addressSpace: 0), smmSlot), "does not exist");
    }

    [Theory]
    [InlineData(1UL)]
    [InlineData(3UL)]
    [InlineData(64UL)]
    public void Resizing_a_slot_is_EINVAL(ulong pages)
    {
        var slot = new Memslot(1, 0, 0x10_0000, 2 * Page, Hva, 0);

        var verdict = Check(MemslotRequest.Create(1, 0x10_0000, pages * Page, Hva), slot);

        AssertRefused(Errno.EINVAL, verdict, "cannot be resized");
    }

    [Fact]
    public void Changing_the_host_address_of_a_slot_is_EINVAL()
    {
        var slot = new Memslot(1, 0, 0x10_0000, 2 * Page, Hva, 0);

        var verdict = Check(MemslotRequest.Create(1, 0x10_0000, 2 * Page, Hva + 0x10_0000), slot);

        AssertRefused(Errno.EINVAL, verdict, "host address of a slot cannot change");
    }

    [Theory]
    [InlineData(0u, ReadOnly)]
    [InlineData(ReadOnly, 0u)]
    [InlineData(LogDirty, LogDirty | ReadOnly)]
    [InlineData(LogDirty | ReadOnly, LogDirty)]
    public void Toggling_readonly_on_an_existing_slot_is_EINVAL(uint before, uint after)
    {
        var slot = new Memslot(1, 0, 0x10_0000, 2 * Page, Hva, before);

        var verdict = Check(MemslotRequest.Create(1, 0x10_0000, 2 * Page, Hva, after), slot);

        AssertRefused(Errno.EINVAL, verdict, "KVM_MEM_READONLY cannot be toggled");
    }

    [Fact]
    public void Toggling_readonly_is_EINVAL_even_as_part_of_a_move()
    {
        var slot = new Memslot(1, 0, 0x10_0000, 2 * Page, Hva, 0);

        var verdict = Check(MemslotRequest.Create(1, 0x20_0000, 2 * Page, Hva, ReadOnly), slot);

        AssertRefused(Errno.EINVAL, verdict, "KVM_MEM_READONLY cannot be toggled");
    }

    // ---- overlap -------------------------------------------------------------------------------

    // The existing slot covers gfns 0x100..0x10f.
    private static readonly Memslot Occupant = new(1, 0, 0x10_0000, 16 * Page, Hva, 0);

    [Theory]
    [InlineData(0x0f8UL, 16UL)] // covers the first 8 pages
    [InlineData(0x108UL, 16UL)] // covers the last 8 pages
    [InlineData(0x0ffUL, 2UL)]  // meets the first page only
    [InlineData(0x10fUL, 1UL)]  // the last page only
    [InlineData(0x104UL, 4UL)]  // strictly inside
    [InlineData(0x0f0UL, 64UL)] // strictly around
    [InlineData(0x100UL, 16UL)] // identical range
    public void Create_overlapping_a_slot_is_EEXIST(ulong baseGfn, ulong pages)
    {
        var verdict = Check(MemslotRequest.Create(2, baseGfn * Page, pages * Page, Hva + 0x100_0000), Occupant);

        AssertRefused(Errno.EEXIST, verdict, "overlaps slot 1");
    }

    [Theory]
    [InlineData(0x0f0UL, 16UL)] // ends exactly where the occupant starts
    [InlineData(0x110UL, 16UL)] // starts exactly where the occupant ends
    public void Create_adjacent_to_a_slot_is_accepted(ulong baseGfn, ulong pages)
    {
        AssertAccepted(MemslotChangeKind.Create, Check(MemslotRequest.Create(2, baseGfn * Page, pages * Page, Hva + 0x100_0000), Occupant));
    }

    [Theory]
    [InlineData(0x0f8UL)]
    [InlineData(0x108UL)]
    [InlineData(0x100UL)]
    public void Move_onto_another_slot_is_EEXIST(ulong newBaseGfn)
    {
        var mover = new Memslot(2, 0, 0x40_0000, 16 * Page, Hva + 0x100_0000, 0);

        var verdict = Check(new MemslotRequest(2, 0, newBaseGfn * Page, 16 * Page, mover.HostAddress), Occupant, mover);

        AssertRefused(Errno.EEXIST, verdict, "overlaps slot 1");
    }

    [Theory]
    [InlineData(0x0f8UL)] // slides down half its size
    [InlineData(0x108UL)] // slides up half its size
    [InlineData(0x101UL)] // slides up one page
    public void Move_onto_a_range_overlapping_only_its_own_old_range_is_accepted(ulong newBaseGfn)
    {
        var verdict = Check(new MemslotRequest(1, 0, newBaseGfn * Page, 16 * Page, Hva), Occupant);

        AssertAccepted(MemslotChangeKind.Move, verdict);
        Assert.Equal(Occupant, verdict.Old);
        Assert.Equal(newBaseGfn, verdict.New!.Value.BaseGfn);
    }

    [Fact]
    public void Overlap_wins_over_beyond_MaxGfn_as_in_the_kernel()
    {
        // The kernel checks overlap (EEXIST) in __kvm_set_memory_region before x86's prepare step
        // checks kvm_mmu_max_gfn (EINVAL).
        var limits = new MemslotLimits { MaxGfn = 0xfff };
        var nearTop = new Memslot(1, 0, 0xff0 * Page, 16 * Page, Hva, 0);
        var request = MemslotRequest.Create(2, 0xff8 * Page, 16 * Page, Hva + 0x100_0000);

        AssertRefused(Errno.EEXIST, Check(limits, request, nearTop), "overlaps slot 1");
        AssertRefused(Errno.EINVAL, Check(limits, request), "highest gfn");
    }

    [Fact]
    public void Overlap_wins_over_beyond_MaxGfn_on_move_too()
    {
        var limits = new MemslotLimits { MaxGfn = 0xfff };
        var nearTop = new Memslot(1, 0, 0xff0 * Page, 16 * Page, Hva, 0);
        var mover = new Memslot(2, 0, 0, 16 * Page, Hva + 0x100_0000, 0);
        var request = new MemslotRequest(2, 0, 0xff8 * Page, 16 * Page, mover.HostAddress);

        AssertRefused(Errno.EEXIST, Check(limits, request, nearTop, mover), "overlaps slot 1");
        AssertRefused(Errno.EINVAL, Check(limits, request, mover), "highest gfn");
    }

    [Fact]
    public void Slots_in_different_address_spaces_never_conflict()
    {
        var limits = new MemslotLimits { AddressSpaces = 2, SmmSupported = true };
        var normal = new Memslot(1, 0, 0x10_0000, 16 * Page, Hva, 0);

        var sameRangeOtherId = Check(limits, MemslotRequest.Create(2, 0x10_0000, 16 * Page, Hva, addressSpace: 1), normal);
        var sameRangeSameId = Check(limits, MemslotRequest.Create(1, 0x10_0000, 16 * Page, Hva, addressSpace: 1), normal);
        var sameIdOtherSize = Check(limits, MemslotRequest.Create(1, 0x10_8000, 64 * Page, Hva + Page, addressSpace: 1), normal);

        AssertAccepted(MemslotChangeKind.Create, sameRangeOtherId);
        AssertAccepted(MemslotChangeKind.Create, sameRangeSameId);
        Assert.Null(sameRangeSameId.Old);
        AssertAccepted(MemslotChangeKind.Create, sameIdOtherSize);
    }

    [Fact]
    public void Move_in_one_address_space_ignores_slots_of_the_other()
    {
        var limits = new MemslotLimits { AddressSpaces = 2, SmmSupported = true };
        var smm = new Memslot(7, 1, 0x10_0000, 16 * Page, Hva, 0);
        var mover = new Memslot(2, 0, 0x40_0000, 16 * Page, Hva + 0x100_0000, 0);

        var verdict = Check(limits, new MemslotRequest(2, 0, 0x10_0000, 16 * Page, mover.HostAddress), smm, mover);

        AssertAccepted(MemslotChangeKind.Move, verdict);
    }

    // ---- change kind derivation ----------------------------------------------------------------

    [Fact]
    public void Size_zero_on_an_existing_slot_is_Delete()
    {
        var verdict = Check(MemslotRequest.Delete(1), Occupant);

        AssertAccepted(MemslotChangeKind.Delete, verdict);
        Assert.Equal(Occupant, verdict.Old);
        Assert.Null(verdict.New);
    }

    [Fact]
    public void Size_zero_deletes_whatever_the_other_fields_say()
    {
        // The kernel looks only at the slot number once memory_size is 0.
        var verdict = Check(new MemslotRequest(1, LogDirty, 0x99_9000, 0, Hva + 0x5000), Occupant);

        AssertAccepted(MemslotChangeKind.Delete, verdict);
        Assert.Equal(Occupant, verdict.Old);
    }

    [Fact]
    public void New_id_is_Create()
    {
        var verdict = Check(MemslotRequest.Create(2, 0x20_0000, 4 * Page, Hva + 0x100_0000, LogDirty), Occupant);

        AssertAccepted(MemslotChangeKind.Create, verdict);
        Assert.Null(verdict.Old);
        Assert.Equal(new Memslot(2, 0, 0x20_0000, 4 * Page, Hva + 0x100_0000, LogDirty), verdict.New);
    }

    [Fact]
    public void Same_id_with_another_base_is_Move()
    {
        var verdict = Check(new MemslotRequest(1, 0, 0x80_0000, 16 * Page, Hva), Occupant);

        AssertAccepted(MemslotChangeKind.Move, verdict);
        Assert.Equal(Occupant, verdict.Old);
        Assert.Equal(Occupant with { GuestPhysAddr = 0x80_0000 }, verdict.New);
    }

    [Fact]
    public void Move_with_a_dirty_logging_change_is_still_Move()
    {
        var verdict = Check(new MemslotRequest(1, LogDirty, 0x80_0000, 16 * Page, Hva), Occupant);

        AssertAccepted(MemslotChangeKind.Move, verdict);
        Assert.Equal(LogDirty, verdict.New!.Value.Flags);
    }

    [Theory]
    [InlineData(0u, LogDirty)]
    [InlineData(LogDirty, 0u)]
    [InlineData(ReadOnly, ReadOnly | LogDirty)]
    public void Dirty_logging_change_in_place_is_FlagsOnly(uint before, uint after)
    {
        var slot = Occupant with { Flags = before };

        var verdict = Check(new MemslotRequest(1, after, slot.GuestPhysAddr, slot.Size, slot.HostAddress), slot);

        AssertAccepted(MemslotChangeKind.FlagsOnly, verdict);
        Assert.Equal(slot, verdict.Old);
        Assert.Equal(slot with { Flags = after }, verdict.New);
    }

    [Fact]
    public void Identical_request_is_None_and_accepted()
    {
        var verdict = Check(new MemslotRequest(1, 0, Occupant.GuestPhysAddr, Occupant.Size, Occupant.HostAddress), Occupant);

        AssertAccepted(MemslotChangeKind.None, verdict);
        Assert.Equal(Occupant, verdict.Old);
        Assert.Equal(Occupant, verdict.New);
    }
}
