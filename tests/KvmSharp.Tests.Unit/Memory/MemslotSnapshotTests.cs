using KvmSharp.Memory.Memslots;
using Xunit;

namespace KvmSharp.Tests.Unit.Memory;

/// <summary>MemslotSnapshot lookups: slot edges, gaps, address spaces, many slots, immutability, no allocation.</summary>
public sealed class MemslotSnapshotTests
{
    private const ulong Page = 0x1000;
    private const ulong Hva = 0x7f00_0000_0000;

    private static MemslotSnapshot Build(int addressSpaces, params Memslot[] slots)
    {
        var snapshot = MemslotSnapshot.Empty(addressSpaces);
        foreach (var slot in slots) snapshot = snapshot.With(null, slot);
        return snapshot;
    }

    // gfns 0x10..0x1f, 0x20..0x27 (adjacent to the first), 0x100..0x100 (one page), 0x1000..0x10ff.
    private static readonly Memslot Low = new(1, 0, 0x10 * Page, 16 * Page, Hva, 0);
    private static readonly Memslot Adjacent = new(2, 0, 0x20 * Page, 8 * Page, Hva + 0x10_0000, 0);
    private static readonly Memslot Single = new(3, 0, 0x100 * Page, Page, Hva + 0x20_0000, 0);
    private static readonly Memslot High = new(4, 0, 0x1000 * Page, 0x100 * Page, Hva + 0x30_0000, 0);

    private static readonly MemslotSnapshot Four = Build(1, High, Single, Low, Adjacent);

    [Theory]
    [InlineData(0x10UL, 1)]
    [InlineData(0x1fUL, 1)]
    [InlineData(0x20UL, 2)]
    [InlineData(0x27UL, 2)]
    [InlineData(0x100UL, 3)]
    [InlineData(0x1000UL, 4)]
    [InlineData(0x1080UL, 4)]
    [InlineData(0x10ffUL, 4)]
    public void Gfn_inside_a_slot_finds_that_slot(ulong gfn, int expectedId)
    {
        Assert.True(Four.TryFindByGfn(0, gfn, out var slot));

        Assert.Equal(expectedId, slot.Id);
        Assert.True(slot.ContainsGfn(gfn));
        Assert.Equal(Four.FindById(0, (ushort)expectedId), slot);
    }

    [Theory]
    [InlineData(0x0UL)]      // below every slot
    [InlineData(0xfUL)]      // just below the first
    [InlineData(0x28UL)]     // just past the adjacent pair
    [InlineData(0xffUL)]     // just below the one-page slot
    [InlineData(0x101UL)]    // just past it
    [InlineData(0xfffUL)]    // just below the last
    [InlineData(0x1100UL)]   // just past the last
    [InlineData(0xf_ffff_ffffUL)]
    [InlineData(ulong.MaxValue)]
    public void Gfn_in_a_gap_finds_nothing(ulong gfn)
    {
        Assert.False(Four.TryFindByGfn(0, gfn, out var slot));

        Assert.Equal(default, slot);
    }

    [Fact]
    public void Empty_snapshot_finds_nothing()
    {
        var empty = MemslotSnapshot.Empty(2);

        Assert.False(empty.TryFindByGfn(0, 0, out _));
        Assert.False(empty.TryFindByGfn(1, 0x1234, out _));
        Assert.Equal(0, empty.Count(0));
        Assert.Equal(2, empty.AddressSpaceCount);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(1)]
    [InlineData(int.MaxValue)]
    public void Address_space_out_of_range_finds_nothing(int addressSpace)
    {
        Assert.False(Four.TryFindByGfn(addressSpace, 0x10, out _));
    }

    [Fact]
    public void Lookups_stay_within_their_address_space()
    {
        var smm = new Memslot(1, 1, 0x30 * Page, 16 * Page, Hva + 0x40_0000, 0);
        var snapshot = Build(2, Low, smm);

        Assert.True(snapshot.TryFindByGfn(0, 0x10, out var normal));
        Assert.Equal(Low, normal);
        Assert.False(snapshot.TryFindByGfn(1, 0x10, out _));
        Assert.True(snapshot.TryFindByGfn(1, 0x30, out var found));
        Assert.Equal(smm, found);
        Assert.False(snapshot.TryFindByGfn(0, 0x30, out _));
        Assert.Equal(Low, snapshot.FindById(0, 1));
        Assert.Equal(smm, snapshot.FindById(1, 1));
    }

    [Fact]
    public void Slots_are_listed_in_guest_address_order()
    {
        Assert.Equal([1, 2, 3, 4], Four.Slots(0).Select(s => (int)s.Id));
        Assert.Equal(4, Four.Count(0));
    }

    [Fact]
    public void With_returns_a_new_snapshot_and_leaves_the_old_one_as_it_was()
    {
        var moved = Single with { GuestPhysAddr = 0x200 * Page };

        var next = Four.With(Single, moved);

        Assert.Equal(Four.Generation + 1, next.Generation);
        Assert.True(Four.TryFindByGfn(0, 0x100, out _));
        Assert.False(Four.TryFindByGfn(0, 0x200, out _));
        Assert.False(next.TryFindByGfn(0, 0x100, out _));
        Assert.True(next.TryFindByGfn(0, 0x200, out var found));
        Assert.Equal(moved, found);
        Assert.Equal(4, next.Count(0));
    }

    [Fact]
    public void With_replacing_flags_keeps_one_slot_at_that_base()
    {
        var logged = Low with { Flags = 1 };

        var next = Four.With(Low, logged);

        Assert.Equal(4, next.Count(0));
        Assert.True(next.TryFindByGfn(0, 0x10, out var found));
        Assert.Equal(logged, found);
        Assert.Equal(logged, next.FindById(0, 1));
    }

    [Fact]
    public void With_removing_a_slot_removes_it_from_both_indexes()
    {
        var next = Four.With(Adjacent, null);

        Assert.False(next.TryFindByGfn(0, 0x20, out _));
        Assert.Null(next.FindById(0, 2));
        Assert.True(next.TryFindByGfn(0, 0x1f, out var low));
        Assert.Equal(Low, low);
        Assert.Equal(3, next.Count(0));
    }

    [Theory]
    [InlineData(0x18UL, 0x10UL, 1)] // starts inside Low, reaches into Adjacent: the lowest overlap is reported
    [InlineData(0x08UL, 0x09UL, 1)] // ends on Low's first page
    [InlineData(0xc0UL, 0x41UL, 3)] // ends on Single
    [InlineData(0x27UL, 0x01UL, 2)] // Adjacent's last page
    public void FindOverlap_reports_a_slot_sharing_a_page(ulong baseGfn, ulong pages, int expectedId)
    {
        var proposed = new Memslot(9, 0, baseGfn * Page, pages * Page, 0, 0);

        var overlap = Four.FindOverlap(proposed, 9);

        Assert.NotNull(overlap);
        Assert.True(overlap.Value.EndGfn > baseGfn && overlap.Value.BaseGfn < baseGfn + pages);
        Assert.Equal(expectedId, overlap.Value.Id);
    }

    [Theory]
    [InlineData(0x00UL, 0x10UL)] // ends where Low starts
    [InlineData(0x28UL, 0xd8UL)] // fills the gap between Adjacent and Single exactly
    [InlineData(0x101UL, 0xeffUL)] // fills the gap between Single and High exactly
    [InlineData(0x1100UL, 0x1UL)] // starts where High ends
    public void FindOverlap_ignores_adjacent_slots(ulong baseGfn, ulong pages)
    {
        var proposed = new Memslot(9, 0, baseGfn * Page, pages * Page, 0, 0);

        Assert.Null(Four.FindOverlap(proposed, 9));
    }

    [Fact]
    public void FindOverlap_ignores_the_excluded_id()
    {
        var lowMovedUp = Low with { GuestPhysAddr = 0x18 * Page, Size = 8 * Page };

        Assert.Null(Four.FindOverlap(lowMovedUp, excludingId: 1));
        Assert.Equal(1, Four.FindOverlap(lowMovedUp, excludingId: 9)!.Value.Id);
    }

    [Fact]
    public void Many_one_page_slots_are_each_found_and_gaps_between_them_are_empty()
    {
        // The host's KVM_CAP_NR_MEMSLOTS: 32764 non-adjacent one-page slots at every other gfn.
        const int count = 32764;
        var snapshot = MemslotSnapshot.Empty(1);
        for (int i = 0; i < count; i++)
        {
            // Insert out of order so the sorted index, not insertion order, does the work.
            int id = (int)((i * 7919L) % count);
            snapshot = snapshot.With(null, new Memslot((ushort)id, 0, (ulong)id * 2 * Page, Page, Hva + ((ulong)id * Page), 0));
        }

        Assert.Equal(count, snapshot.Count(0));
        for (int id = 0; id < count; id++)
        {
            ulong gfn = (ulong)id * 2;
            Assert.True(snapshot.TryFindByGfn(0, gfn, out var slot), $"gfn 0x{gfn:x}");
            if (slot.Id != id) Assert.Fail($"gfn 0x{gfn:x} found slot {slot.Id}, expected {id}");
            Assert.False(snapshot.TryFindByGfn(0, gfn + 1, out _), $"gap gfn 0x{gfn + 1:x}");
        }
        Assert.False(snapshot.TryFindByGfn(0, (ulong)count * 2, out _));
    }

    [Fact]
    public void TryFindByGfn_allocates_nothing()
    {
        var snapshot = MemslotSnapshot.Empty(2);
        for (int i = 0; i < 1024; i++)
            snapshot = snapshot.With(null, new Memslot((ushort)i, (ushort)(i & 1), (ulong)i * 4 * Page, 2 * Page, Hva, 0));

        int found = Lookups(snapshot, 20_000); // warm up: tiering, statics
        long before = GC.GetAllocatedBytesForCurrentThread();
        found += Lookups(snapshot, 200_000);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        Assert.True(found > 0);
    }

    private static int Lookups(MemslotSnapshot snapshot, int iterations)
    {
        int found = 0;
        for (int i = 0; i < iterations; i++)
        {
            ulong gfn = (ulong)(i % 5000);
            if (snapshot.TryFindByGfn(i & 1, gfn, out var slot) && slot.ContainsGfn(gfn)) found++;
        }
        return found;
    }
}
