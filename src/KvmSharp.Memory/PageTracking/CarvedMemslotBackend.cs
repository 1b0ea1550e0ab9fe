using System.Collections.Immutable;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;

namespace KvmSharp.Memory.PageTracking;

/// <summary>
/// Realises user memslots as kernel memslots. Untracked, a user slot is exactly one kernel slot
/// with the user's id (no overhead). With tracked gfns it is carved: the tracked runs become
/// KVM_MEM_READONLY kernel slots (guest writes exit as MMIO), with ids taken from the top of the id
/// space. The guest is quiesced around every re-carve, so it never sees the gap. The user's view
/// (ids, ranges, dirty log) is unchanged: dirty bitmaps of the pieces are merged back, plus the
/// pages KvmSharp itself wrote on the guest's behalf. All mutators run under the memslot write lock.
/// </summary>
public sealed class CarvedMemslotBackend : IMemslotBackend
{
    private readonly IMemslotBackend _kernel;
    private readonly MemslotLimits _limits;
    private readonly Dictionary<uint, List<KernelSlotPiece>> _pieces = new();
    private readonly Dictionary<uint, Memslot> _userSlots = new();
    private readonly HashSet<uint> _kernelIdsInUse = new();
    private ImmutableDictionary<uint, ulong[]> _softDirty = ImmutableDictionary<uint, ulong[]>.Empty;

    public CarvedMemslotBackend(IMemslotBackend kernel, MemslotLimits limits)
    {
        _kernel = kernel;
        _limits = limits;
    }

    public IGuestQuiescer Quiescer { get; set; } = new NoVcpuQuiescer();
    public TimeSpan QuiesceTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How many kernel slots realise the user slot (1 when nothing in it is tracked).</summary>
    public IReadOnlyList<KernelSlotPiece> PiecesOf(ushort id, ushort addressSpace = 0) =>
        _pieces.TryGetValue(MemslotRequest.Pack(id, addressSpace), out var pieces) ? pieces.ToList() : [];

    public int KernelSlotCount => _pieces.Values.Sum(p => p.Count);

    public int SetUserMemoryRegion(in kvm_userspace_memory_region region)
    {
        uint packed = region.slot;
        bool exists = _userSlots.TryGetValue(packed, out var user);
        if (region.memory_size == 0) return exists ? Delete(packed, region) : _kernel.SetUserMemoryRegion(region);
        if (!exists) return Create(region);
        if (region.guest_phys_addr != user.GuestPhysAddr) return Move(packed, user, region);
        return ChangeFlags(packed, user, region.flags);
    }

    private int Create(in kvm_userspace_memory_region region)
    {
        uint packed = region.slot;
        if (_kernelIdsInUse.Contains(packed))
        {
            int moved = RelocatePieceUsing(packed);
            if (moved != 0) return moved;
        }
        int result = _kernel.SetUserMemoryRegion(region);
        if (result != 0) return result;
        var user = new Memslot((ushort)packed, (ushort)(packed >> 16), region.guest_phys_addr, region.memory_size, region.userspace_addr, region.flags);
        _userSlots[packed] = user;
        _pieces[packed] = [new KernelSlotPiece(user.Id, user.AddressSpace, user.GuestPhysAddr, user.Size, user.HostAddress, user.Flags)];
        _kernelIdsInUse.Add(packed);
        return 0;
    }

    private int Delete(uint packed, in kvm_userspace_memory_region region)
    {
        var pieces = _pieces[packed];
        int result;
        if (pieces.Count == 1)
        {
            result = _kernel.SetUserMemoryRegion(region);
        }
        else
        {
            if (!Quiescer.TryQuiesce(QuiesceTimeout)) return -Errno.EBUSY;
            try
            {
                result = 0;
                // A refusal part-way puts the pieces already deleted back: a refused DELETE changes nothing.
                for (int i = 0; i < pieces.Count; i++)
                {
                    int r = _kernel.SetUserMemoryRegion(pieces[i].ToKernelDelete());
                    if (r == 0) continue;
                    for (int j = 0; j < i; j++) _kernel.SetUserMemoryRegion(pieces[j].ToKernel());
                    return r;
                }
            }
            finally
            {
                Quiescer.Release();
            }
        }
        if (result != 0) return result;
        foreach (var piece in pieces) _kernelIdsInUse.Remove(piece.PackedSlot);
        _pieces.Remove(packed);
        _userSlots.Remove(packed);
        _softDirty = _softDirty.Remove(packed);
        return 0;
    }

    private int Move(uint packed, Memslot user, in kvm_userspace_memory_region region)
    {
        var pieces = _pieces[packed];
        var moved = user with { GuestPhysAddr = region.guest_phys_addr };
        if (pieces.Count == 1 && pieces[0].Flags == user.Flags)
        {
            int result = _kernel.SetUserMemoryRegion(region);
            if (result != 0) return result;
        }
        else
        {
            // Only reachable when moves are allowed with notifiers: tracking of the slot is dropped,
            // as the kernel drops a moved slot's metadata, so it moves back as a single piece.
            int result = Reshape(packed, user, [new KernelSlotPiece(user.Id, user.AddressSpace, moved.GuestPhysAddr, moved.Size, moved.HostAddress, moved.Flags)]);
            if (result != 0) return result;
        }
        _userSlots[packed] = moved;
        _pieces[packed] = [new KernelSlotPiece(user.Id, user.AddressSpace, moved.GuestPhysAddr, moved.Size, moved.HostAddress, moved.Flags)];
        return 0;
    }

    private int ChangeFlags(uint packed, Memslot user, uint flags)
    {
        var pieces = _pieces[packed];
        var changed = new List<KernelSlotPiece>(pieces.Count);
        foreach (var piece in pieces)
        {
            var updated = piece with { Flags = flags | (piece.IsTrackedCarve ? KvmMemFlags.KVM_MEM_READONLY : 0) };
            int result = _kernel.SetUserMemoryRegion(updated.ToKernel());
            if (result != 0)
            {
                // Put back the pieces already changed: a refused change changes nothing.
                for (int i = 0; i < changed.Count; i++) _kernel.SetUserMemoryRegion(pieces[i].ToKernel());
                return result;
            }
            changed.Add(updated);
        }
        bool loggingStarts = (flags & ~user.Flags & KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES) != 0;
        if (loggingStarts && _softDirty.ContainsKey(packed)) _softDirty = _softDirty.SetItem(packed, new ulong[BitmapWords(user)]);
        _pieces[packed] = changed;
        _userSlots[packed] = user with { Flags = flags };
        return 0;
    }

    /// <summary>Re-carve a user slot for the given tracked gfns; 0 or -errno, with nothing changed on failure.</summary>
    public int Relayout(uint packed, IEnumerable<ulong> trackedGfns)
    {
        if (!_userSlots.TryGetValue(packed, out var user)) return -Errno.ENOENT;
        return Reshape(packed, user, KernelSlotLayout.Compute(user, trackedGfns));
    }

    private int Reshape(uint packed, Memslot user, List<KernelSlotPiece> desired)
    {
        var current = _pieces[packed];
        if (current.Count == desired.Count && current.Zip(desired).All(pair => pair.First.SameShape(pair.Second)))
            return 0;

        var kept = current.Where(old => desired.Any(d => d.SameShape(old))).ToList();
        var removed = current.Where(old => !kept.Contains(old)).ToList();
        var released = removed.Select(p => p.PackedSlot).ToHashSet();
        var assigned = new List<KernelSlotPiece>(desired.Count);
        var created = new List<KernelSlotPiece>();
        var taken = new HashSet<uint>();
        for (int w = 0; w < desired.Count; w++)
        {
            var want = desired[w];
            if (kept.FirstOrDefault(old => old.SameShape(want)) is { Size: > 0 } keep)
            {
                assigned.Add(keep);
                continue;
            }
            ushort id = w == 0 ? user.Id : AllocateId(user.AddressSpace, released, taken); // the first piece always holds the user's id
            if (id == ushort.MaxValue) return -Errno.ENOSPC;
            var piece = want with { KernelId = id };
            taken.Add(piece.PackedSlot);
            assigned.Add(piece);
            created.Add(piece);
        }

        if (!Quiescer.TryQuiesce(QuiesceTimeout)) return -Errno.EBUSY;
        try
        {
            foreach (var piece in removed) HarvestDirty(packed, user, piece);
            for (int k = 0; k < removed.Count; k++)
            {
                int result = _kernel.SetUserMemoryRegion(removed[k].ToKernelDelete());
                if (result == 0) continue;
                for (int j = 0; j < k; j++) _kernel.SetUserMemoryRegion(removed[j].ToKernel());
                return result;
            }
            for (int i = 0; i < created.Count; i++)
            {
                int result = _kernel.SetUserMemoryRegion(created[i].ToKernel());
                if (result == 0) continue;
                // Roll back to the old layout.
                for (int j = 0; j < i; j++) _kernel.SetUserMemoryRegion(created[j].ToKernelDelete());
                foreach (var piece in removed) _kernel.SetUserMemoryRegion(piece.ToKernel());
                return result;
            }
        }
        finally
        {
            Quiescer.Release();
        }

        foreach (var piece in removed) _kernelIdsInUse.Remove(piece.PackedSlot);
        foreach (var piece in created) _kernelIdsInUse.Add(piece.PackedSlot);
        _pieces[packed] = assigned;
        return 0;
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

    // Moves a piece off a kernel id the user now wants for a new slot.
    private int RelocatePieceUsing(uint packedId)
    {
        foreach (var (owner, pieces) in _pieces)
        {
            int index = pieces.FindIndex(p => p.PackedSlot == packedId);
            if (index < 0) continue;
            var piece = pieces[index];
            ushort id = AllocateId(piece.AddressSpace, new HashSet<uint>(), new HashSet<uint> { packedId });
            if (id == ushort.MaxValue) return -Errno.ENOSPC;
            var replacement = piece with { KernelId = id };
            if (!Quiescer.TryQuiesce(QuiesceTimeout)) return -Errno.EBUSY;
            try
            {
                HarvestDirty(owner, _userSlots[owner], piece);
                int deleted = _kernel.SetUserMemoryRegion(piece.ToKernelDelete());
                if (deleted != 0) return deleted;
                int result = _kernel.SetUserMemoryRegion(replacement.ToKernel());
                if (result != 0)
                {
                    _kernel.SetUserMemoryRegion(piece.ToKernel());
                    return result;
                }
            }
            finally
            {
                Quiescer.Release();
            }
            _kernelIdsInUse.Remove(packedId);
            _kernelIdsInUse.Add(replacement.PackedSlot);
            pieces[index] = replacement;
            return 0;
        }
        return 0;
    }

    // Carve pieces take ids from the top of the id space, where users rarely go.
    private ushort AllocateId(ushort addressSpace, HashSet<uint> released, HashSet<uint> taken)
    {
        for (int id = _limits.SlotsPerAddressSpace - 1; id >= 0; id--)
        {
            uint packed = MemslotRequest.Pack((ushort)id, addressSpace);
            if (taken.Contains(packed) || _userSlots.ContainsKey(packed)) continue;
            if (_kernelIdsInUse.Contains(packed) && !released.Contains(packed)) continue;
            return (ushort)id;
        }
        return ushort.MaxValue;
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
