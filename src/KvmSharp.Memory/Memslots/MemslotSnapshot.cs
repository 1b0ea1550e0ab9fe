using System.Collections.Immutable;

namespace KvmSharp.Memory.Memslots;

/// <summary>
/// An immutable view of every memslot in every address space. Writers build a new snapshot and
/// publish it with one reference swap; vCPU threads look up a gfn in O(log n) without a lock and
/// keep a consistent view for as long as they hold the reference (the kernel's active/inactive
/// memslot sets, in managed form).
/// </summary>
public sealed class MemslotSnapshot
{
    private static readonly IComparer<Memslot> ByBaseGfn = Comparer<Memslot>.Create((a, b) => a.BaseGfn.CompareTo(b.BaseGfn));

    private readonly AddressSpaceSlots[] _spaces;

    private MemslotSnapshot(AddressSpaceSlots[] spaces, long generation)
    {
        _spaces = spaces;
        Generation = generation;
    }

    /// <summary>Increases by one with every published change.</summary>
    public long Generation { get; }

    public static MemslotSnapshot Empty(int addressSpaces)
    {
        var spaces = new AddressSpaceSlots[Math.Max(1, addressSpaces)];
        for (int i = 0; i < spaces.Length; i++)
            spaces[i] = new AddressSpaceSlots(ImmutableSortedSet.Create(ByBaseGfn), ImmutableDictionary<ushort, Memslot>.Empty);
        return new MemslotSnapshot(spaces, 0);
    }

    public int AddressSpaceCount => _spaces.Length;

    public int Count(int addressSpace) => addressSpace < _spaces.Length ? _spaces[addressSpace].ById.Count : 0;

    /// <summary>Slots of one address space ordered by guest address.</summary>
    public IEnumerable<Memslot> Slots(int addressSpace) =>
        addressSpace < _spaces.Length ? _spaces[addressSpace].ByGfn : Enumerable.Empty<Memslot>();

    public IEnumerable<Memslot> AllSlots() => _spaces.SelectMany(space => space.ByGfn);

    public Memslot? FindById(ushort addressSpace, ushort id) =>
        addressSpace < _spaces.Length && _spaces[addressSpace].ById.TryGetValue(id, out var slot) ? slot : null;

    /// <summary>The slot mapping <paramref name="gfn"/> in <paramref name="addressSpace"/>: O(log n), lock-free, allocation-free.</summary>
    public bool TryFindByGfn(int addressSpace, ulong gfn, out Memslot slot)
    {
        slot = default;
        if ((uint)addressSpace >= (uint)_spaces.Length) return false;
        var byGfn = _spaces[addressSpace].ByGfn;
        int index = FloorIndex(byGfn, gfn);
        if (index < 0) return false;
        var candidate = byGfn[index];
        if (!candidate.ContainsGfn(gfn)) return false;
        slot = candidate;
        return true;
    }

    /// <summary>A slot other than <paramref name="excludingId"/> whose range meets <paramref name="proposed"/>'s.</summary>
    public Memslot? FindOverlap(Memslot proposed, ushort excludingId)
    {
        if (proposed.AddressSpace >= _spaces.Length) return null;
        var byGfn = _spaces[proposed.AddressSpace].ByGfn;
        int index = Math.Max(0, FloorIndex(byGfn, proposed.BaseGfn));
        for (; index < byGfn.Count; index++)
        {
            var slot = byGfn[index];
            if (slot.BaseGfn >= proposed.EndGfn) break;
            if (slot.Id != excludingId && slot.EndGfn > proposed.BaseGfn) return slot;
        }
        return null;
    }

    /// <summary>A new snapshot with <paramref name="old"/> removed and <paramref name="replacement"/> added.</summary>
    public MemslotSnapshot With(Memslot? old, Memslot? replacement)
    {
        var spaces = (AddressSpaceSlots[])_spaces.Clone();
        if (old is { } removed)
        {
            var space = spaces[removed.AddressSpace];
            spaces[removed.AddressSpace] = new AddressSpaceSlots(space.ByGfn.Remove(removed), space.ById.Remove(removed.Id));
        }
        if (replacement is { } added)
        {
            var space = spaces[added.AddressSpace];
            spaces[added.AddressSpace] = new AddressSpaceSlots(space.ByGfn.Add(added), space.ById.SetItem(added.Id, added));
        }
        return new MemslotSnapshot(spaces, Generation + 1);
    }

    // Index of the last slot whose base gfn is <= gfn, or -1.
    private static int FloorIndex(ImmutableSortedSet<Memslot> byGfn, ulong gfn)
    {
        int index = byGfn.IndexOf(new Memslot(0, 0, gfn << Memslot.PageShift, 0, 0, 0));
        return index >= 0 ? index : ~index - 1;
    }

    private readonly record struct AddressSpaceSlots(ImmutableSortedSet<Memslot> ByGfn, ImmutableDictionary<ushort, Memslot> ById);
}
