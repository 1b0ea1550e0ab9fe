using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;

namespace KvmSharp.Memory.PageTracking;

/// <summary>
/// How a user memslot is cut into kernel memslots: maximal runs of untracked pages keep the slot's
/// flags, maximal runs of write-trapped pages become read-only (adjacent tracked gfns share one
/// piece), and runs of access-trapped pages (<see cref="TrackingMode.TrapAccesses"/>) get no kernel
/// slot at all, so reads exit too. When kernel ids run short, a slot is carved coarser: tracked runs
/// merge across the smallest untracked gaps (then across the slot's head and tail) until at most
/// <c>maxPieces</c> remain; the untracked pages inside a merged run then trap too, and are written
/// but not reported (a merged run is access-trapped when either part was). Pure: ids are assigned
/// later, the first piece always takes the user's own id.
/// </summary>
public static class KernelSlotLayout
{
    public static List<KernelSlotPiece> Compute(Memslot slot, IEnumerable<ulong> trackedGfns, int maxPieces = int.MaxValue, IReadOnlySet<ulong>? accessTrapped = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxPieces, 1);
        // A user read-only slot traps every write already (they are the user's MMIO): one piece.
        if ((slot.Flags & KvmMemFlags.KVM_MEM_READONLY) != 0)
            return [PieceOf(slot, slot.BaseGfn, slot.EndGfn, tracked: true, first: true)];

        var runs = TrackedRuns(slot, trackedGfns, accessTrapped);
        if (runs.Count > 0)
        {
            int Count()
            {
                int count = (runs[0].Start > slot.BaseGfn ? 1 : 0) + (runs[^1].End < slot.EndGfn ? 1 : 0);
                for (int i = 0; i < runs.Count; i++)
                {
                    if (!runs[i].NoSlot) count++;
                    if (i > 0 && runs[i].Start > runs[i - 1].End) count++;
                }
                return count;
            }
            // Merging two runs across their gap saves pieces: smallest gaps first (lowest address on a tie).
            while (Count() > maxPieces && runs.Count > 1)
            {
                int best = 0;
                for (int i = 1; i < runs.Count - 1; i++)
                    if (runs[i + 1].Start - runs[i].End < runs[best + 1].Start - runs[best].End) best = i;
                runs[best] = (runs[best].Start, runs[best + 1].End, runs[best].NoSlot || runs[best + 1].NoSlot);
                runs.RemoveAt(best + 1);
            }
            // Then the untracked head and tail join the trapped run, the smaller one first.
            while (Count() > maxPieces && (runs[0].Start > slot.BaseGfn || runs[0].End < slot.EndGfn))
            {
                ulong head = runs[0].Start - slot.BaseGfn, tail = slot.EndGfn - runs[0].End;
                if (head > 0 && (tail == 0 || head <= tail)) runs[0] = (slot.BaseGfn, runs[0].End, runs[0].NoSlot);
                else runs[0] = (runs[0].Start, slot.EndGfn, runs[0].NoSlot);
            }
        }

        var pieces = new List<KernelSlotPiece>();
        ulong cursor = slot.BaseGfn;
        foreach (var (start, end, noSlot) in runs)
        {
            Add(cursor, start, tracked: false);
            if (!noSlot) Add(start, end, tracked: true);
            cursor = end;
        }
        Add(cursor, slot.EndGfn, tracked: false);
        return pieces;

        void Add(ulong fromGfn, ulong toGfn, bool tracked)
        {
            if (toGfn > fromGfn) pieces.Add(PieceOf(slot, fromGfn, toGfn, tracked, first: pieces.Count == 0));
        }
    }

    /// <summary>Maximal runs [Start, End) of tracked gfns of one mode inside the slot, in address order.</summary>
    private static List<(ulong Start, ulong End, bool NoSlot)> TrackedRuns(Memslot slot, IEnumerable<ulong> trackedGfns, IReadOnlySet<ulong>? accessTrapped)
    {
        var runs = new List<(ulong Start, ulong End, bool NoSlot)>();
        foreach (ulong gfn in trackedGfns.Where(slot.ContainsGfn).Distinct().Order())
        {
            bool noSlot = accessTrapped?.Contains(gfn) ?? false;
            if (runs.Count > 0 && runs[^1].End == gfn && runs[^1].NoSlot == noSlot) runs[^1] = (runs[^1].Start, gfn + 1, noSlot);
            else runs.Add((gfn, gfn + 1, noSlot));
        }
        return runs;
    }

    private static KernelSlotPiece PieceOf(Memslot slot, ulong fromGfn, ulong toGfn, bool tracked, bool first)
    {
        ulong offset = (fromGfn - slot.BaseGfn) << Memslot.PageShift;
        uint flags = tracked ? slot.Flags | KvmMemFlags.KVM_MEM_READONLY : slot.Flags;
        return new KernelSlotPiece(first ? slot.Id : (ushort)0, slot.AddressSpace, slot.GuestPhysAddr + offset, (toGfn - fromGfn) << Memslot.PageShift, slot.HostAddress + offset, flags);
    }

    /// <summary>
    /// The kernel-view invariant, checked from the outside: for every user slot of the model, its
    /// pieces cover its range with no gap or overlap, map every gfn to the user's host address, carry
    /// the user's flags on untracked gfns and the user's flags plus READONLY on tracked ones, use the
    /// fewest pieces, and the first piece holds the user's id. A slot may be carved coarser than that
    /// (untracked gfns read-only) only while the fine carving of its address space would not fit in
    /// <paramref name="idsPerAddressSpace"/> kernel ids. Finally the kernel's slots, as recorded from
    /// the calls actually made, are exactly the union of the pieces, and <paramref name="kernelSlotCount"/>
    /// counts them. <paramref name="unlistedSlots"/> counts, per address space, user slots left out of
    /// <paramref name="userSlots"/> and of <paramref name="kernelSlots"/> (each one untracked kernel slot),
    /// so a caller can check a subset while the id budget stays exact. Returns what is wrong, one line
    /// each; empty when the layout is right.
    /// </summary>
    public static List<string> Verify(
        IEnumerable<Memslot> userSlots,
        Func<Memslot, IReadOnlyCollection<ulong>> trackedGfns,
        Func<Memslot, IReadOnlyList<KernelSlotPiece>> piecesOf,
        IEnumerable<KernelSlotPiece> kernelSlots,
        int kernelSlotCount,
        int idsPerAddressSpace,
        IReadOnlyDictionary<ushort, int>? unlistedSlots = null,
        Func<Memslot, IReadOnlyCollection<ulong>>? accessTrappedGfns = null)
    {
        var problems = new List<string>();
        var allPieces = new List<KernelSlotPiece>();
        var fineTotal = new Dictionary<ushort, long>();
        var coarse = new List<Memslot>();
        foreach (var (space, count) in unlistedSlots ?? new Dictionary<ushort, int>()) fineTotal[space] = count;
        foreach (var user in userSlots)
        {
            var tracked = trackedGfns(user).Where(user.ContainsGfn).ToHashSet();
            var accessTrapped = (accessTrappedGfns?.Invoke(user) ?? []).Where(tracked.Contains).ToHashSet();
            var pieces = piecesOf(user).OrderBy(p => p.GuestPhysAddr).ToList();
            allPieces.AddRange(pieces);
            var fine = Compute(user, tracked, accessTrapped: accessTrapped);
            fineTotal[user.AddressSpace] = fineTotal.GetValueOrDefault(user.AddressSpace) + fine.Count;
            int before = problems.Count;
            CheckSlot(user, tracked, accessTrapped, pieces, problems);
            if (problems.Count > before) continue;
            bool isFine = pieces.Count == fine.Count && pieces.Zip(fine).All(pair => pair.First.SameShape(pair.Second));
            if (!isFine) coarse.Add(user);
        }
        foreach (var user in coarse)
        {
            if (fineTotal[user.AddressSpace] <= idsPerAddressSpace)
                problems.Add($"{user}: carved coarser than needed ({piecesOf(user).Count} pieces) though the fine carving of address space {user.AddressSpace} needs only {fineTotal[user.AddressSpace]} of {idsPerAddressSpace} ids");
        }

        foreach (var group in allPieces.GroupBy(p => p.PackedSlot).Where(g => g.Count() > 1))
            problems.Add($"kernel id {(ushort)group.Key} (as {group.Key >> 16}) is used by {group.Count()} pieces");
        foreach (var space in allPieces.GroupBy(p => p.AddressSpace))
        {
            int used = space.Count() + (unlistedSlots?.GetValueOrDefault(space.Key) ?? 0);
            if (used > idsPerAddressSpace) problems.Add($"address space {space.Key} uses {used} kernel slots, above the {idsPerAddressSpace} ids it has");
        }

        var expected = allPieces.Select(Describe).Order(StringComparer.Ordinal).ToList();
        var actual = kernelSlots.Select(Describe).Order(StringComparer.Ordinal).ToList();
        foreach (string missing in expected.Except(actual)) problems.Add($"the kernel was never handed {missing}");
        foreach (string extra in actual.Except(expected)) problems.Add($"the kernel holds {extra}, which no piece describes");
        int unlisted = unlistedSlots?.Values.Sum() ?? 0;
        if (kernelSlotCount != actual.Count + unlisted)
            problems.Add($"KernelSlotCount says {kernelSlotCount}, the kernel holds {actual.Count + unlisted} slots");
        return problems;
    }

    private static void CheckSlot(Memslot user, HashSet<ulong> tracked, HashSet<ulong> accessTrapped, List<KernelSlotPiece> pieces, List<string> problems)
    {
        if (pieces.Count == 0)
        {
            if (accessTrapped.Count == 0) problems.Add($"{user}: no kernel piece");
            return;
        }
        uint readOnly = KvmMemFlags.KVM_MEM_READONLY;
        ulong cursor = user.GuestPhysAddr;
        for (int i = 0; i < pieces.Count; i++)
        {
            var piece = pieces[i];
            string where = $"{user}: piece {piece.KernelId} gpa 0x{piece.GuestPhysAddr:x}+0x{piece.Size:x}";
            // A gap is right only where access-trapped gfns are (they have no kernel slot).
            if (piece.GuestPhysAddr != cursor && !(piece.GuestPhysAddr > cursor && HoldsAccessTrapped(cursor, piece.GuestPhysAddr)))
                problems.Add($"{where} starts at 0x{piece.GuestPhysAddr:x}, expected 0x{cursor:x} (gap or overlap)");
            if (piece.Size == 0) problems.Add($"{where} is empty");
            if (piece.AddressSpace != user.AddressSpace) problems.Add($"{where} is in address space {piece.AddressSpace}");
            if (piece.HostAddress != user.HostAddressOf(piece.GuestPhysAddr)) problems.Add($"{where} maps hva 0x{piece.HostAddress:x}, expected 0x{user.HostAddressOf(piece.GuestPhysAddr):x}");
            if (piece.Flags != user.Flags && piece.Flags != (user.Flags | readOnly)) problems.Add($"{where} has flags 0x{piece.Flags:x}, the user's are 0x{user.Flags:x}");
            if (i > 0 && piece.Flags == pieces[i - 1].Flags && piece.GuestPhysAddr == cursor) problems.Add($"{where} has the flags of the piece before it: not the fewest pieces");
            ulong first = piece.GuestPhysAddr >> Memslot.PageShift, end = first + (piece.Size >> Memslot.PageShift);
            bool pieceReadOnly = (piece.Flags & readOnly) != 0;
            bool anyTracked = tracked.Any(g => g >= first && g < end);
            if (accessTrapped.Any(g => g >= first && g < end)) problems.Add($"{where} maps access-trapped gfns, which must have no kernel slot");
            if (!pieceReadOnly && anyTracked) problems.Add($"{where} is writable but holds tracked gfns");
            if (pieceReadOnly && (user.Flags & readOnly) == 0 && !anyTracked) problems.Add($"{where} is read-only but holds no tracked gfn");
            cursor = piece.GuestPhysAddr + piece.Size;
        }
        if (cursor != user.GuestPhysAddr + user.Size && !HoldsAccessTrapped(cursor, user.GuestPhysAddr + user.Size))
            problems.Add($"{user}: pieces end at 0x{cursor:x}, the slot at 0x{user.GuestPhysAddr + user.Size:x}");
        // With access-trapped gfns the user's id may sit on a later piece (one with a head gap was kept while the head changed).
        if (pieces[0].KernelId != user.Id && (accessTrapped.Count == 0 || pieces.All(p => p.KernelId != user.Id)))
            problems.Add($"{user}: its first piece has kernel id {pieces[0].KernelId}, not the user's id");

        bool HoldsAccessTrapped(ulong fromGpa, ulong toGpa) =>
            accessTrapped.Any(g => g >= fromGpa >> Memslot.PageShift && g < toGpa >> Memslot.PageShift);
    }

    private static string Describe(KernelSlotPiece p) =>
        $"kernel slot {p.KernelId} (as {p.AddressSpace}) gpa 0x{p.GuestPhysAddr:x}+0x{p.Size:x} hva 0x{p.HostAddress:x} flags 0x{p.Flags:x}";
}
