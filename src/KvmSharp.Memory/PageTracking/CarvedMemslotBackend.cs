using System.Collections.Immutable;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;

namespace KvmSharp.Memory.PageTracking;

/// <summary>
/// Realises user memslots as kernel memslots. Untracked, a user slot is exactly one kernel slot
/// with the user's id (no overhead). With tracked gfns it is carved: the tracked runs become
/// KVM_MEM_READONLY kernel slots (guest writes exit as MMIO), with ids taken from the top of the id
/// space. Carving never costs the user an id: when the kernel's ids run out, carved slots are
/// carved coarser (see <see cref="KernelSlotLayout.Compute"/>) to free ids, and carved finer again
/// once ids are free. The guest is quiesced around every re-carve, so it never sees the gap. The
/// user's view (ids, ranges, flags, dirty log) is unchanged: dirty bitmaps of the pieces are merged
/// back, plus the pages KvmSharp itself wrote on the guest's behalf. All mutators run under the
/// memslot write lock; every path either completes or leaves the kernel and this state as they were.
/// </summary>
public sealed class CarvedMemslotBackend : IMemslotBackend
{
    private readonly IMemslotBackend _kernel;
    private readonly MemslotLimits _limits;
    private readonly Dictionary<uint, List<KernelSlotPiece>> _pieces = new();
    private readonly Dictionary<uint, Memslot> _userSlots = new();
    private readonly Dictionary<uint, ulong[]> _tracked = new();
    private readonly Dictionary<uint, HashSet<ulong>> _accessTrapped = new();
    private readonly HashSet<uint> _carved = new();
    private readonly HashSet<uint> _coarse = new();
    private readonly Dictionary<uint, uint> _pieceOwner = new();
    private readonly Dictionary<ushort, FreeSlotIds> _freeIds = new();
    private ImmutableDictionary<uint, ulong[]> _softDirty = ImmutableDictionary<uint, ulong[]>.Empty;

    public CarvedMemslotBackend(IMemslotBackend kernel, MemslotLimits limits)
    {
        _kernel = kernel;
        _limits = limits;
    }

    public IGuestQuiescer Quiescer { get; set; } = new NoVcpuQuiescer();
    public TimeSpan QuiesceTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The holder name of a re-carve's pause lease.</summary>
    public const string CarveHolder = "page-track carve";

    /// <summary>The kernel slots realising the user slot, in address order (one when nothing in it is tracked).</summary>
    public IReadOnlyList<KernelSlotPiece> PiecesOf(ushort id, ushort addressSpace = 0) =>
        _pieces.TryGetValue(MemslotRequest.Pack(id, addressSpace), out var pieces) ? pieces.ToList() : [];

    /// <summary>Kernel slots in use, user slots and carved pieces together.</summary>
    public int KernelSlotCount => _pieces.Values.Sum(p => p.Count);

    /// <summary>Kernel slots that tracking costs: the pieces beyond one per user slot.</summary>
    public int TrackingKernelSlots => KernelSlotCount - _userSlots.Count;

    /// <summary>User slots carved coarser than their tracked gfns ask for, because kernel ids ran out.</summary>
    public int CoarsenedSlots => _coarse.Count;

    public int SetUserMemoryRegion(in kvm_userspace_memory_region region)
    {
        uint packed = region.slot;
        bool exists = _userSlots.TryGetValue(packed, out var user);
        int result;
        if (region.memory_size == 0) result = exists ? Delete(packed, region) : _kernel.SetUserMemoryRegion(region);
        else if (!exists) result = Create(region);
        else if (region.guest_phys_addr != user.GuestPhysAddr) result = Move(packed, user, region);
        else result = ChangeFlags(packed, user, region.flags);
        if ((packed >> 16) < _limits.AddressSpaces) Refine((ushort)(packed >> 16));
        return result;
    }

    private int Create(in kvm_userspace_memory_region region)
    {
        uint packed = region.slot;
        ushort addressSpace = (ushort)(packed >> 16);
        if (addressSpace >= _limits.AddressSpaces || (ushort)packed >= _limits.SlotsPerAddressSpace)
            return _kernel.SetUserMemoryRegion(region); // not an id this backend hands out: the kernel says why
        if (_pieceOwner.ContainsKey(packed))
        {
            // A piece holds the id: it moves to a free id, which coarser carving provides if none is left
            // (and which may release this very id).
            int freed = EnsureFreeIds(addressSpace, 1);
            if (freed != 0) return freed;
            if (_pieceOwner.ContainsKey(packed))
            {
                int moved = RelocatePieceUsing(packed);
                if (moved != 0) return moved;
            }
        }
        int result = _kernel.SetUserMemoryRegion(region);
        if (result != 0) return result;
        var user = new Memslot((ushort)packed, addressSpace, region.guest_phys_addr, region.memory_size, region.userspace_addr, region.flags);
        _userSlots[packed] = user;
        _pieces[packed] = [new KernelSlotPiece(user.Id, user.AddressSpace, user.GuestPhysAddr, user.Size, user.HostAddress, user.Flags)];
        FreeIds(addressSpace).Remove(user.Id);
        return 0;
    }

    private int Delete(uint packed, in kvm_userspace_memory_region region)
    {
        var pieces = _pieces[packed];
        if (pieces.Count == 1 && pieces[0].KernelId == (ushort)packed)
        {
            int result = _kernel.SetUserMemoryRegion(region);
            if (result != 0) return result;
        }
        else
        {
            if (Quiescer.TryQuiesce(CarveHolder, QuiesceTimeout) is not { } pause) return -Errno.EBUSY;
            try
            {
                int result = ApplyToKernel(pieces, []);
                if (result != 0) return result;
            }
            finally
            {
                pause.Dispose();
            }
        }
        ReleasePieces(packed, pieces);
        if (!pieces.Any(p => p.KernelId == (ushort)packed)) FreeIds((ushort)(packed >> 16)).Add((ushort)packed); // reserved with no piece holding it
        _pieces.Remove(packed);
        _userSlots.Remove(packed);
        _tracked.Remove(packed);
        _accessTrapped.Remove(packed);
        _carved.Remove(packed);
        _coarse.Remove(packed);
        _softDirty = _softDirty.Remove(packed);
        return 0;
    }

    // MOVE, possibly with new flags in the same request. The kernel drops a moved slot's tracking
    // metadata, and so does the page tracker: the slot moves back to a single piece.
    private int Move(uint packed, Memslot user, in kvm_userspace_memory_region region)
    {
        var pieces = _pieces[packed];
        var moved = user with { GuestPhysAddr = region.guest_phys_addr, Flags = region.flags };
        var piece = new KernelSlotPiece(user.Id, user.AddressSpace, moved.GuestPhysAddr, moved.Size, moved.HostAddress, moved.Flags);
        if (pieces.Count == 1 && pieces[0].Flags == user.Flags)
        {
            int result = _kernel.SetUserMemoryRegion(region);
            if (result != 0) return result;
        }
        else
        {
            int result = Reshape(packed, user, [piece]);
            if (result != 0) return result;
        }
        _userSlots[packed] = moved;
        _pieces[packed] = [piece];
        _tracked.Remove(packed);
        _accessTrapped.Remove(packed);
        _carved.Remove(packed);
        _coarse.Remove(packed);
        StartSoftDirtyIfLoggingStarts(packed, user, moved.Flags);
        return 0;
    }

    // FLAGS_ONLY on every piece, ids and ranges kept (so the kernel keeps each piece's dirty bitmap).
    private int ChangeFlags(uint packed, Memslot user, uint flags)
    {
        var pieces = _pieces[packed];
        var changed = new List<KernelSlotPiece>(pieces.Count);
        foreach (var piece in pieces)
        {
            var updated = piece with { Flags = flags | (piece.Flags & KvmMemFlags.KVM_MEM_READONLY) };
            int result = _kernel.SetUserMemoryRegion(updated.ToKernel());
            if (result != 0)
            {
                // Put back the pieces already changed: a refused change changes nothing.
                for (int i = 0; i < changed.Count; i++) _kernel.SetUserMemoryRegion(pieces[i].ToKernel());
                return result;
            }
            changed.Add(updated);
        }
        StartSoftDirtyIfLoggingStarts(packed, user, flags);
        _pieces[packed] = changed;
        _userSlots[packed] = user with { Flags = flags };
        return 0;
    }

    // Logging (re)starts with a clean log: what was written before it started is not reported.
    private void StartSoftDirtyIfLoggingStarts(uint packed, Memslot user, uint flags)
    {
        bool loggingStarts = (flags & ~user.Flags & KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES) != 0;
        if (loggingStarts && _softDirty.ContainsKey(packed)) _softDirty = _softDirty.SetItem(packed, new ulong[BitmapWords(user)]);
    }

    /// <summary>
    /// Re-carve a user slot for the given tracked gfns, those in <paramref name="accessTrappedGfns"/>
    /// without any kernel slot; 0 or -errno, with nothing changed on failure.
    /// </summary>
    public int Relayout(uint packed, IEnumerable<ulong> trackedGfns, IEnumerable<ulong>? accessTrappedGfns = null)
    {
        if (!_userSlots.TryGetValue(packed, out var user)) return -Errno.ENOENT;
        var tracked = trackedGfns.Where(user.ContainsGfn).Distinct().Order().ToArray();
        var previousAccessTrapped = _accessTrapped.GetValueOrDefault(packed);
        var accessTrapped = accessTrappedGfns?.Where(user.ContainsGfn).ToHashSet();
        if (accessTrapped is { Count: > 0 }) _accessTrapped[packed] = accessTrapped;
        else _accessTrapped.Remove(packed);
        var (layout, coarse) = Plan(packed, user, tracked);
        int result = Reshape(packed, user, layout);
        if (result != 0)
        {
            if (previousAccessTrapped is not null) _accessTrapped[packed] = previousAccessTrapped;
            else _accessTrapped.Remove(packed);
            return result;
        }
        if (tracked.Length > 0) _tracked[packed] = tracked;
        else _tracked.Remove(packed);
        MarkCoarse(packed, coarse);
        Refine(user.AddressSpace);
        return 0;
    }

    // The fine carving if the ids it needs are free, else the finest carving that fits in them.
    private (List<KernelSlotPiece> Layout, bool Coarse) Plan(uint packed, Memslot user, ulong[] tracked)
    {
        var accessTrapped = _accessTrapped.GetValueOrDefault(packed);
        var fine = KernelSlotLayout.Compute(user, tracked, accessTrapped: accessTrapped);
        int available = _pieces[packed].Count + FreeIds(user.AddressSpace).Count;
        return fine.Count <= available ? (fine, false) : (KernelSlotLayout.Compute(user, tracked, Math.Max(1, available), accessTrapped), true);
    }

    private void MarkCoarse(uint packed, bool coarse)
    {
        if (coarse) _coarse.Add(packed);
        else _coarse.Remove(packed);
        if (_pieces[packed].Count > 1) _carved.Add(packed);
        else _carved.Remove(packed);
    }

    /// <summary>
    /// Carve coarse slots finer again where the free ids allow, in every address space: a refinement the kernel
    /// refused earlier (best effort, see <see cref="Refine"/>) is tried again, so a coarse carving does not outlive
    /// the shortage of ids that caused it.
    /// </summary>
    public void RefineCoarse()
    {
        for (int space = 0; space < _limits.AddressSpaces && _coarse.Count > 0; space++) Refine((ushort)space);
    }

    // Carve coarse slots finer again, as far as the free ids allow. Best effort: a refusal keeps the coarse carving.
    private void Refine(ushort addressSpace)
    {
        if (_coarse.Count == 0) return;
        foreach (uint packed in _coarse.Where(p => (p >> 16) == addressSpace).Order().ToList())
        {
            if (FreeIds(addressSpace).Count == 0) return;
            var user = _userSlots[packed];
            var (layout, coarse) = Plan(packed, user, _tracked.GetValueOrDefault(packed) ?? []);
            if (Reshape(packed, user, layout) == 0) MarkCoarse(packed, coarse);
        }
    }

    // Free ids by carving other slots coarser, the most carved first, until <paramref name="needed"/> are free.
    private int EnsureFreeIds(ushort addressSpace, int needed)
    {
        var free = FreeIds(addressSpace);
        while (free.Count < needed)
        {
            uint victim = 0;
            int most = 1;
            foreach (uint packed in _carved)
            {
                if ((packed >> 16) != addressSpace) continue;
                int count = _pieces[packed].Count;
                if (count > most || (count == most && packed < victim)) (victim, most) = (packed, count);
            }
            if (most == 1) return -Errno.ENOSPC; // every slot is one piece: the user holds every id
            int cap = Math.Max(1, most - (needed - free.Count));
            var user = _userSlots[victim];
            int result = Reshape(victim, user, KernelSlotLayout.Compute(user, _tracked.GetValueOrDefault(victim) ?? [], cap, _accessTrapped.GetValueOrDefault(victim)));
            if (result != 0) return result;
            MarkCoarse(victim, true);
        }
        return 0;
    }

    private int Reshape(uint packed, Memslot user, List<KernelSlotPiece> desired)
    {
        var current = _pieces[packed];
        if (current.Count == desired.Count && current.Zip(desired).All(pair => pair.First.SameShape(pair.Second)))
            return 0;

        // Shapes in hash sets: a slot carved around thousands of gfns has tens of thousands of pieces.
        var desiredShapes = desired.Select(Shape).ToHashSet();
        var kept = current.Where(old => desiredShapes.Contains(Shape(old))).ToList();
        var keptByShape = kept.ToDictionary(Shape);
        var removed = current.Where(old => !desiredShapes.Contains(Shape(old))).ToList();
        // Ids of removed pieces are reused first (in address order), then free ones from the top.
        var reusable = new Queue<ushort>(removed.Select(p => p.KernelId).Where(id => id != user.Id));
        bool userIdInKernel = current.Any(p => p.KernelId == user.Id) && !removed.Any(p => p.KernelId == user.Id);
        var free = FreeIds(user.AddressSpace).Descending().GetEnumerator();
        var assigned = new List<KernelSlotPiece>(desired.Count);
        var created = new List<KernelSlotPiece>();
        for (int w = 0; w < desired.Count; w++)
        {
            var want = desired[w];
            if (keptByShape.TryGetValue(Shape(want), out var keep))
            {
                assigned.Add(keep);
                continue;
            }
            ushort id;
            // The first piece holds the user's id (a slot whose head has no kernel slot: its first piece that has one).
            if (!userIdInKernel)
            {
                id = user.Id;
                userIdInKernel = true;
            }
            else if (reusable.Count > 0) id = reusable.Dequeue();
            else if (free.MoveNext()) id = free.Current;
            else return -Errno.ENOSPC;
            var piece = want with { KernelId = id };
            assigned.Add(piece);
            created.Add(piece);
        }

        if (Quiescer.TryQuiesce(CarveHolder, QuiesceTimeout) is not { } pause) return -Errno.EBUSY;
        try
        {
            foreach (var piece in removed) HarvestDirty(packed, user, piece);
            int result = ApplyToKernel(removed, created);
            if (result != 0) return result;
        }
        finally
        {
            pause.Dispose();
        }

        ReleasePieces(packed, removed, keep: user.Id);
        foreach (var piece in created)
        {
            FreeIds(piece.AddressSpace).Remove(piece.KernelId);
            if (piece.KernelId != user.Id) _pieceOwner[piece.PackedSlot] = packed;
        }
        _pieces[packed] = assigned;
        return 0;
    }

    private static (ulong Gpa, ulong Size, ulong Hva, uint Flags) Shape(KernelSlotPiece piece) => (piece.GuestPhysAddr, piece.Size, piece.HostAddress, piece.Flags);

    // Delete <paramref name="removed"/>, then create <paramref name="created"/>; on a refusal undo what was done, in reverse.
    private int ApplyToKernel(List<KernelSlotPiece> removed, List<KernelSlotPiece> created)
    {
        for (int k = 0; k < removed.Count; k++)
        {
            int result = _kernel.SetUserMemoryRegion(removed[k].ToKernelDelete());
            if (result == 0) continue;
            for (int j = k - 1; j >= 0; j--) _kernel.SetUserMemoryRegion(removed[j].ToKernel());
            return result;
        }
        for (int i = 0; i < created.Count; i++)
        {
            int result = _kernel.SetUserMemoryRegion(created[i].ToKernel());
            if (result == 0) continue;
            for (int j = i - 1; j >= 0; j--) _kernel.SetUserMemoryRegion(created[j].ToKernelDelete());
            for (int j = removed.Count - 1; j >= 0; j--) _kernel.SetUserMemoryRegion(removed[j].ToKernel());
            return result;
        }
        return 0;
    }

    // The user's own id (<paramref name="keep"/>) stays reserved while the user slot exists, even with no piece holding it.
    private void ReleasePieces(uint owner, IEnumerable<KernelSlotPiece> pieces, int keep = -1)
    {
        foreach (var piece in pieces)
        {
            if (_pieceOwner.TryGetValue(piece.PackedSlot, out uint holder) && holder == owner) _pieceOwner.Remove(piece.PackedSlot);
            if (piece.KernelId != keep) FreeIds(piece.AddressSpace).Add(piece.KernelId);
        }
    }

    private FreeSlotIds FreeIds(ushort addressSpace)
    {
        if (!_freeIds.TryGetValue(addressSpace, out var free))
        {
            free = new FreeSlotIds(_limits.SlotsPerAddressSpace);
            _freeIds[addressSpace] = free;
        }
        return free;
    }

    // A piece about to be deleted takes its kernel dirty bits with it: keep them.
    private void HarvestDirty(uint packed, Memslot user, KernelSlotPiece piece)
    {
        if ((user.Flags & KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES) == 0) return;
        var bits = new ulong[(piece.Size / 4096 + 63) / 64];
        if (_kernel.GetDirtyLog(piece.PackedSlot, bits) != 0) return;
        var soft = SoftDirtyOf(packed, user);
        ulong first = (piece.GuestPhysAddr - user.GuestPhysAddr) >> Memslot.PageShift;
        OrShifted(soft, bits, first, piece.Size >> Memslot.PageShift);
    }

    private ulong[] SoftDirtyOf(uint packed, Memslot user)
    {
        if (!_softDirty.TryGetValue(packed, out var bits))
        {
            bits = new ulong[BitmapWords(user)];
            _softDirty = _softDirty.SetItem(packed, bits);
        }
        return bits;
    }

    private static long BitmapWords(Memslot user) => (long)((user.PageCount + 63) / 64);

    // Moves a piece off a kernel id the user now wants for a new slot (a free id exists: the caller made sure).
    private int RelocatePieceUsing(uint packedId)
    {
        uint owner = _pieceOwner[packedId];
        var pieces = _pieces[owner];
        int index = pieces.FindIndex(p => p.PackedSlot == packedId);
        var piece = pieces[index];
        var free = FreeIds(piece.AddressSpace);
        if (free.Count == 0) return -Errno.ENOSPC;
        var replacement = piece with { KernelId = free.Max };
        if (Quiescer.TryQuiesce(CarveHolder, QuiesceTimeout) is not { } pause) return -Errno.EBUSY;
        try
        {
            HarvestDirty(owner, _userSlots[owner], piece);
            int result = ApplyToKernel([piece], [replacement]);
            if (result != 0) return result;
        }
        finally
        {
            pause.Dispose();
        }
        _pieceOwner.Remove(packedId);
        _pieceOwner[replacement.PackedSlot] = owner;
        free.Remove(replacement.KernelId);
        free.Add(piece.KernelId);
        pieces[index] = replacement;
        return 0;
    }

    public int GetDirtyLog(uint packed, Span<ulong> bitmap)
    {
        if (!_pieces.TryGetValue(packed, out var pieces)) return _kernel.GetDirtyLog(packed, bitmap);
        // An uncarved slot with nothing written on the guest's behalf: straight into the caller's bitmap.
        if (pieces.Count == 1 && !_softDirty.ContainsKey(packed)) return _kernel.GetDirtyLog(pieces[0].PackedSlot, bitmap);
        var user = _userSlots[packed];
        bitmap.Clear();
        foreach (var piece in pieces)
        {
            var bits = new ulong[(piece.Size / 4096 + 63) / 64];
            int result = _kernel.GetDirtyLog(piece.PackedSlot, bits);
            if (result != 0) return result;
            OrShifted(bitmap, bits, (piece.GuestPhysAddr - user.GuestPhysAddr) >> Memslot.PageShift, piece.Size >> Memslot.PageShift);
        }
        if (_softDirty.TryGetValue(packed, out var soft))
        {
            for (int i = 0; i < soft.Length && i < bitmap.Length; i++) bitmap[i] |= Interlocked.Exchange(ref soft[i], 0);
        }
        return 0;
    }

    /// <summary>Record that KvmSharp wrote a page on the guest's behalf (the kernel cannot see it). Lock-free.</summary>
    public void MarkDirty(in Memslot user, ulong pageIndex)
    {
        if (!Volatile.Read(ref _softDirty).TryGetValue(user.PackedSlot, out var bits)) return;
        Interlocked.Or(ref bits[pageIndex / 64], 1UL << (int)(pageIndex % 64));
    }

    /// <summary>Make sure a slot being carved has somewhere to record emulated writes.</summary>
    internal void PrepareSoftDirty(uint packed)
    {
        if (_userSlots.TryGetValue(packed, out var user)) SoftDirtyOf(packed, user);
    }

    private static void OrShifted(Span<ulong> target, ReadOnlySpan<ulong> source, ulong firstPage, ulong pages)
    {
        for (ulong page = 0; page < pages; page++)
        {
            if ((source[(int)(page / 64)] & (1UL << (int)(page % 64))) == 0) continue;
            ulong bit = firstPage + page;
            target[(int)(bit / 64)] |= 1UL << (int)(bit % 64);
        }
    }
}
