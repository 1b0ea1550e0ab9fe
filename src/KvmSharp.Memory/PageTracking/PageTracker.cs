using System.Collections.Immutable;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;

namespace KvmSharp.Memory.PageTracking;

/// <summary>
/// The kernel's page-track model (arch/x86/kvm/mmu/page_track.c) in managed code: notifiers with two
/// hooks, a 16-bit write-track count per gfn per slot, and guest writes to tracked gfns trapped
/// (through read-only carved kernel slots) and reported after they land. Unlike the kernel, a gfn is
/// protected in every address space whose slots map it (SMM included). The notifier list and the
/// counts are immutable snapshots read without locks on vCPU threads; writers serialize on the
/// memslot write lock.
/// </summary>
public sealed unsafe class PageTracker : IMemslotObserver
{
    private sealed class Registration(IPageTrackNotifier notifier)
    {
        public readonly IPageTrackNotifier Notifier = notifier;
        public volatile bool Active = true;
        public long Faults;
    }

    private readonly MemslotTable _memslots;
    private readonly CarvedMemslotBackend _backend;
    private Registration[] _notifiers = [];
    private ImmutableDictionary<uint, ImmutableDictionary<ulong, ushort>> _counts = ImmutableDictionary<uint, ImmutableDictionary<ulong, ushort>>.Empty;
    private ImmutableDictionary<uint, ImmutableHashSet<ulong>> _accessTrapped = ImmutableDictionary<uint, ImmutableHashSet<ulong>>.Empty;
    private long _notifierFaults;
    private long _trackedWrites;

    public PageTracker(MemslotTable memslots, CarvedMemslotBackend backend, IGuestQuiescer quiescer, PageTrackOptions? options = null)
    {
        _memslots = memslots;
        _backend = backend;
        Quiescer = quiescer;
        Options = options ?? new PageTrackOptions();
        backend.Quiescer = quiescer;
        backend.QuiesceTimeout = Options.QuiesceTimeout;
        memslots.AddObserver(this);
    }

    public PageTrackOptions Options { get; }
    public IGuestQuiescer Quiescer { get; }

    /// <summary>Where notifier faults and other events are logged.</summary>
    public Action<string>? Log { get; set; }

    /// <summary>Called when a notifier faults under <see cref="NotifierFaultPolicy.StopVm"/>.</summary>
    public Action<string>? StopVm { get; set; }

    public long NotifierFaults => Interlocked.Read(ref _notifierFaults);
    public long TrackedWrites => Interlocked.Read(ref _trackedWrites);
    public int NotifierCount => Volatile.Read(ref _notifiers).Length;

    /// <summary>Kernel memslots that tracking costs (the carved pieces beyond one per user slot).</summary>
    public int TrackingKernelSlots
    {
        get { lock (_memslots.WriteLock) return _backend.TrackingKernelSlots; }
    }

    /// <summary>User slots carved coarser than their tracked gfns ask for, because kernel memslot ids ran out.</summary>
    public int CoarsenedSlots
    {
        get { lock (_memslots.WriteLock) return _backend.CoarsenedSlots; }
    }

    /// <summary>Kernel memslots in use, those tracking costs and the slots carved coarser, read together.</summary>
    public (int KernelSlots, int TrackingKernelSlots, int CoarsenedSlots) KernelSlotUsage
    {
        get { lock (_memslots.WriteLock) return (_backend.KernelSlotCount, _backend.TrackingKernelSlots, _backend.CoarsenedSlots); }
    }

    // ---- notifier registration -------------------------------------------------------------

    public void Register(IPageTrackNotifier notifier)
    {
        ArgumentNullException.ThrowIfNull(notifier);
        lock (_memslots.WriteLock)
        {
            if (_notifiers.Any(r => ReferenceEquals(r.Notifier, notifier)))
                throw new ArgumentException("this notifier is already registered", nameof(notifier));
            Volatile.Write(ref _notifiers, [.. _notifiers, new Registration(notifier)]);
        }
    }

    /// <summary>
    /// Remove a notifier. When this returns, none of its hooks is running or will start, except the
    /// very hook this is called from: unregistering from inside one's own hook is allowed, that hook
    /// runs to its end and is the last (the kernel's synchronize_srcu, minus the self-deadlock).
    /// </summary>
    public void Unregister(IPageTrackNotifier notifier)
    {
        using var hostCall = Quiescer.EnterHostCall();
        lock (_memslots.WriteLock)
        {
            var registration = _notifiers.FirstOrDefault(r => ReferenceEquals(r.Notifier, notifier))
                ?? throw new ArgumentException("this notifier is not registered", nameof(notifier));
            registration.Active = false;
            Volatile.Write(ref _notifiers, _notifiers.Where(r => r != registration).ToArray());
        }
        // Grace period: every vCPU passes through its run loop, so hooks in flight have finished.
        using var grace = Quiescer.TryQuiesce("page-track unregister", Options.QuiesceTimeout)
            ?? throw new PageTrackException("page_track_unregister", Errno.EBUSY, $"hooks still running after {Options.QuiesceTimeout}");
    }

    // ---- write-track counts --------------------------------------------------------------

    /// <summary>kvm_write_track_add_gfn: +1 on the gfn's count in every slot (every address space) mapping it, trapped as <see cref="PageTrackOptions.DefaultMode"/>.</summary>
    public void AddGfn(ulong gfn) => ChangeCount(gfn, +1, Options.DefaultMode, "write_track_add_gfn");

    /// <summary>
    /// As <see cref="AddGfn(ulong)"/>, trapped as <paramref name="mode"/>. A gfn already tracked keeps
    /// the stronger mode of the two (<see cref="TrackingMode.TrapAccesses"/>) until its count drops to 0.
    /// </summary>
    public void AddGfn(ulong gfn, TrackingMode mode) => ChangeCount(gfn, +1, mode, "write_track_add_gfn");

    /// <summary>kvm_write_track_remove_gfn: -1 on the gfn's count in every slot mapping it that tracks it.</summary>
    public void RemoveGfn(ulong gfn) => ChangeCount(gfn, -1, Options.DefaultMode, "write_track_remove_gfn");

    /// <summary>How the gfn is trapped in the slot of <paramref name="addressSpace"/> that maps it (null when not tracked).</summary>
    public TrackingMode? ModeOf(ulong gfn, int addressSpace = 0)
    {
        if (Count(gfn, addressSpace) == 0 || !_memslots.Current.TryFindByGfn(addressSpace, gfn, out var slot)) return null;
        return IsAccessTrapped(slot.PackedSlot, gfn) ? TrackingMode.TrapAccesses : TrackingMode.TrapWrites;
    }

    private bool IsAccessTrapped(uint packedSlot, ulong gfn) =>
        Volatile.Read(ref _accessTrapped).TryGetValue(packedSlot, out var set) && set.Contains(gfn);

    /// <summary>The gfn's count in the slot of <paramref name="addressSpace"/> that maps it (0 when none).</summary>
    public ushort Count(ulong gfn, int addressSpace = 0)
    {
        if (!_memslots.Current.TryFindByGfn(addressSpace, gfn, out var slot)) return 0;
        return Volatile.Read(ref _counts).TryGetValue(slot.PackedSlot, out var perSlot) && perSlot.TryGetValue(gfn, out ushort count) ? count : (ushort)0;
    }

    /// <summary>Every gfn with a non-zero count, per user slot.</summary>
    public IReadOnlyDictionary<uint, IReadOnlyCollection<ulong>> TrackedGfns =>
        Volatile.Read(ref _counts).ToDictionary(p => p.Key, p => (IReadOnlyCollection<ulong>)p.Value.Keys.ToList());

    private void ChangeCount(ulong gfn, int delta, TrackingMode mode, string operation) => ChangeCounts([gfn], delta, mode, operation);

    /// <summary>
    /// Batch kvm_write_track_add_gfn: +1 on each gfn (listed once or more) as <see cref="AddGfn(ulong, TrackingMode)"/>
    /// does, with one re-carve per slot for all of them. All or nothing: a gfn no slot maps, or a count
    /// that would overflow, refuses the whole batch with nothing changed.
    /// </summary>
    public void AddGfns(IEnumerable<ulong> gfns, TrackingMode? mode = null) =>
        ChangeCounts(gfns as IReadOnlyList<ulong> ?? gfns.ToList(), +1, mode ?? Options.DefaultMode, "write_track_add_gfn");

    /// <summary>Batch kvm_write_track_remove_gfn, one re-carve per slot; all or nothing (an untracked gfn refuses the batch).</summary>
    public void RemoveGfns(IEnumerable<ulong> gfns) =>
        ChangeCounts(gfns as IReadOnlyList<ulong> ?? gfns.ToList(), -1, Options.DefaultMode, "write_track_remove_gfn");

    private void ChangeCounts(IReadOnlyList<ulong> gfns, int delta, TrackingMode mode, string operation)
    {
        if (gfns.Count == 0) return;
        using var hostCall = Quiescer.EnterHostCall();
        lock (_memslots.WriteLock)
        {
            var snapshot = _memslots.Current;
            var before = _counts;
            var accessBefore = _accessTrapped;
            var counts = new Dictionary<uint, ImmutableDictionary<ulong, ushort>.Builder>();
            var access = new Dictionary<uint, ImmutableHashSet<ulong>.Builder>();
            var relayout = new Dictionary<uint, Memslot>();
            foreach (ulong gfn in gfns)
            {
                bool mapped = false, changed = false;
                for (int space = 0; space < snapshot.AddressSpaceCount; space++)
                {
                    if (!snapshot.TryFindByGfn(space, gfn, out var slot)) continue;
                    mapped = true;
                    if (!counts.TryGetValue(slot.PackedSlot, out var perSlot))
                    {
                        perSlot = (before.TryGetValue(slot.PackedSlot, out var existing) ? existing : ImmutableDictionary<ulong, ushort>.Empty).ToBuilder();
                        counts[slot.PackedSlot] = perSlot;
                        access[slot.PackedSlot] = (accessBefore.TryGetValue(slot.PackedSlot, out var set) ? set : ImmutableHashSet<ulong>.Empty).ToBuilder();
                    }
                    int count = perSlot.TryGetValue(gfn, out ushort c) ? c : 0;
                    if (delta < 0 && count == 0) continue; // this slot does not track it
                    int updated = count + delta;
                    if (updated > ushort.MaxValue)
                        throw new PageTrackException(operation, Errno.ERANGE, $"gfn 0x{gfn:x} in slot {slot.Id} (as {slot.AddressSpace}) is already tracked {count} times: the 16-bit count would overflow");
                    changed = true;
                    if (updated == 0) perSlot.Remove(gfn);
                    else perSlot[gfn] = (ushort)updated;
                    var accessSet = access[slot.PackedSlot];
                    bool wasAccessTrapped = accessSet.Contains(gfn);
                    // The mode is set when tracking starts and only ever strengthens while it lasts.
                    bool accessTrapped = updated > 0 && (wasAccessTrapped || (delta > 0 && mode == TrackingMode.TrapAccesses));
                    if (accessTrapped && !wasAccessTrapped) accessSet.Add(gfn);
                    else if (!accessTrapped && wasAccessTrapped) accessSet.Remove(gfn);
                    if (count == 0 || updated == 0 || accessTrapped != wasAccessTrapped) relayout[slot.PackedSlot] = slot;
                }
                if (!mapped)
                    throw new PageTrackException(operation, Errno.EINVAL, $"no memslot maps gfn 0x{gfn:x}");
                if (!changed)
                    throw new PageTrackException(operation, Errno.ERANGE, $"gfn 0x{gfn:x} is not tracked: the count would underflow");
            }

            var after = before;
            var accessAfter = accessBefore;
            foreach (var (packed, perSlot) in counts)
            {
                var built = perSlot.ToImmutable();
                after = built.IsEmpty ? after.Remove(packed) : after.SetItem(packed, built);
                var set = access[packed].ToImmutable();
                accessAfter = set.IsEmpty ? accessAfter.Remove(packed) : accessAfter.SetItem(packed, set);
            }

            // Counts first, so the first trapped write already sees them; then the kernel layout, whose
            // quiesce is also the grace period after which no write to an untracked gfn is reported.
            Volatile.Write(ref _counts, after);
            Volatile.Write(ref _accessTrapped, accessAfter);
            var order = relayout.Values.OrderBy(s => s.PackedSlot).ToList();
            for (int i = 0; i < order.Count; i++)
            {
                var slot = order[i];
                if (delta > 0) _backend.PrepareSoftDirty(slot.PackedSlot);
                var tracked = after.TryGetValue(slot.PackedSlot, out var perSlot) ? perSlot.Keys : [];
                int result = _backend.Relayout(slot.PackedSlot, tracked, accessAfter.GetValueOrDefault(slot.PackedSlot));
                if (result == 0) continue;
                Volatile.Write(ref _counts, before);
                Volatile.Write(ref _accessTrapped, accessBefore);
                for (int j = 0; j < i; j++)
                {
                    var undo = order[j];
                    _backend.Relayout(undo.PackedSlot, before.TryGetValue(undo.PackedSlot, out var old) ? old.Keys : [], accessBefore.GetValueOrDefault(undo.PackedSlot));
                }
                string what = gfns.Count == 1 ? $"gfn 0x{gfns[0]:x}" : $"{gfns.Count} gfns";
                throw new PageTrackException(operation, -result, $"the kernel refused to re-carve slot {slot.Id} (as {slot.AddressSpace}) for {what}");
            }
            // A count-only change re-carves nothing: retry here any refinement the kernel refused before.
            _backend.RefineCoarse();
        }
    }

    // ---- the trapped-access path (vCPU threads; allocation-free) -----------------------------

    /// <summary>
    /// An MMIO exit on a vCPU: if it targets guest RAM (a tracked, read-only carved page, or a range
    /// being re-carved), perform it on the backing memory, then report tracked writes. False when the
    /// address is not RAM and belongs to the MMIO bus.
    /// </summary>
    public bool HandleTrappedAccess(int vcpuId, int addressSpace, ulong gpa, Span<byte> data, bool isWrite)
    {
        ulong gfn = gpa >> Memslot.PageShift;
        if (!_memslots.Current.TryFindByGfn(addressSpace, gfn, out var slot)) return false;
        if ((slot.Flags & KvmMemFlags.KVM_MEM_READONLY) != 0) return false; // the user's own ROM: a device's business
        // KVM splits accesses at page boundaries, so the access stays inside this page and slot.
        byte* host = (byte*)slot.HostAddressOf(gpa);
        if (!isWrite)
        {
            GuestMemoryAccess.Load(host, data);
            return true;
        }

        bool tracked = Volatile.Read(ref _counts).TryGetValue(slot.PackedSlot, out var perSlot) && perSlot.ContainsKey(gfn);
        GuestMemoryAccess.Store(host, data);
        if ((slot.Flags & KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES) != 0) _backend.MarkDirty(slot, gfn - slot.BaseGfn);
        if (tracked)
        {
            Interlocked.Increment(ref _trackedWrites);
            NotifyWrite(vcpuId, addressSpace, gpa, data);
        }
        return true;
    }

    /// <summary>
    /// Whether any gfn from <paramref name="firstGfn"/> to <paramref name="lastGfn"/> of user slot
    /// <paramref name="slot"/> is write-tracked: one look at the slot, then per gfn only in a slot that tracks some.
    /// </summary>
    public bool TracksAny(in Memslot slot, ulong firstGfn, ulong lastGfn)
    {
        if (!Volatile.Read(ref _counts).TryGetValue(slot.PackedSlot, out var perSlot) || perSlot.IsEmpty) return false;
        for (ulong gfn = firstGfn; gfn <= lastGfn; gfn++)
            if (perSlot.ContainsKey(gfn)) return true;
        return false;
    }

    /// <summary>What <see cref="PageTrackContext.CurrentVcpuId"/> reads in a TrackWrite hook for a device's write (DMA), not a vCPU's.</summary>
    public const int DeviceWriter = -2;

    /// <summary>
    /// A device wrote <paramref name="bytes"/> at <paramref name="gpa"/> (already in guest memory): the part
    /// on each write-tracked page is reported to the notifiers with <see cref="DeviceWriter"/> as the vCPU.
    /// The kernel never sees device writes, so KvmSharp reports them itself. Returns whether any page was tracked.
    /// </summary>
    public bool ReportDeviceWrite(int addressSpace, ulong gpa, ReadOnlySpan<byte> bytes)
    {
        var counts = Volatile.Read(ref _counts);
        if (counts.IsEmpty || bytes.IsEmpty) return false;
        var snapshot = _memslots.Current;
        bool any = false;
        while (!bytes.IsEmpty)
        {
            ulong gfn = gpa >> Memslot.PageShift;
            int piece = (int)Math.Min((ulong)bytes.Length, ((gfn + 1) << Memslot.PageShift) - gpa);
            if (snapshot.TryFindByGfn(addressSpace, gfn, out var slot) && counts.TryGetValue(slot.PackedSlot, out var perSlot) && perSlot.ContainsKey(gfn))
            {
                any = true;
                Interlocked.Increment(ref _trackedWrites);
                NotifyWrite(DeviceWriter, addressSpace, gpa, bytes[..piece]);
            }
            bytes = bytes[piece..];
            gpa += (ulong)piece;
        }
        return any;
    }

    private void NotifyWrite(int vcpuId, int addressSpace, ulong gpa, ReadOnlySpan<byte> data)
    {
        var notifiers = Volatile.Read(ref _notifiers);
        PageTrackContext.Enter(vcpuId, addressSpace);
        try
        {
            foreach (var registration in notifiers)
            {
                if (!registration.Active) continue;
                try
                {
                    registration.Notifier.TrackWrite(gpa, data);
                }
                catch (Exception e)
                {
                    OnNotifierFault(registration, "TrackWrite", e);
                }
            }
        }
        finally
        {
            PageTrackContext.Leave();
        }
    }

    private void NotifyRemove(ulong gfn, ulong pages)
    {
        foreach (var registration in Volatile.Read(ref _notifiers))
        {
            if (!registration.Active) continue;
            try
            {
                registration.Notifier.TrackRemoveRegion(gfn, pages);
            }
            catch (Exception e)
            {
                OnNotifierFault(registration, "TrackRemoveRegion", e);
            }
        }
    }

    private void OnNotifierFault(Registration registration, string hook, Exception e)
    {
        Interlocked.Increment(ref _notifierFaults);
        long faults = Interlocked.Increment(ref registration.Faults);
        string message = $"page-track notifier {registration.Notifier.GetType().Name} threw from {hook} (fault {faults}): {e.GetType().Name}: {e.Message}";
        Log?.Invoke(message);
        if (Options.OnNotifierFault == NotifierFaultPolicy.StopVm) StopVm?.Invoke(message);
    }

    // ---- the instruction-level path (the VMM's emulation of trapped instructions) ----------

    /// <summary>
    /// Where a trapped access to <paramref name="gpa"/> lands: guest RAM of a user slot that is not the
    /// user's own ROM. False for MMIO. Lock-free and allocation-free (vCPU threads).
    /// </summary>
    public bool TryFindTrappedPage(int addressSpace, ulong gpa, out TrappedPage page)
    {
        page = default;
        ulong gfn = gpa >> Memslot.PageShift;
        if (!_memslots.Current.TryFindByGfn(addressSpace, gfn, out var slot)) return false;
        if ((slot.Flags & KvmMemFlags.KVM_MEM_READONLY) != 0) return false;
        bool tracked = Volatile.Read(ref _counts).TryGetValue(slot.PackedSlot, out var perSlot) && perSlot.ContainsKey(gfn);
        page = new TrappedPage(slot, gfn, (nint)slot.HostAddressOf(gfn << Memslot.PageShift), tracked, tracked && IsAccessTrapped(slot.PackedSlot, gfn));
        return true;
    }

    /// <summary>Note a page KvmSharp wrote on the guest's behalf in the slot's dirty log (the kernel cannot see it).</summary>
    public void MarkWritten(in TrappedPage page)
    {
        if ((page.Slot.Flags & KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES) != 0) _backend.MarkDirty(page.Slot, page.Gfn - page.Slot.BaseGfn);
    }

    /// <summary>Report one guest write instruction's bytes on one tracked page of <paramref name="addressSpace"/>, which have landed, to every notifier.</summary>
    public void ReportGuestWrite(int vcpuId, ulong gpa, ReadOnlySpan<byte> bytes, int addressSpace = 0)
    {
        Interlocked.Increment(ref _trackedWrites);
        NotifyWrite(vcpuId, addressSpace, gpa, bytes);
    }

    // ---- memslot lifecycle --------------------------------------------------------------

    int IMemslotObserver.Prepare(in MemslotVerdict change, out string? reason)
    {
        reason = null;
        if (change.Kind == MemslotChangeKind.Move && NotifierCount > 0 && !Options.AllowMoveWithNotifiers)
        {
            reason = $"memslot MOVE of slot {change.Old?.Id} is refused while {NotifierCount} page-track notifier(s) are registered, " +
                     "as the kernel does since 6.6 (PageTrackOptions.AllowMoveWithNotifiers permits it)";
            return Errno.EINVAL;
        }
        return 0;
    }

    void IMemslotObserver.Committed(in MemslotVerdict change, MemslotSnapshot published)
    {
        if (change.Kind is not (MemslotChangeKind.Delete or MemslotChangeKind.Move) || change.Old is not { } old) return;
        // The slot's counts go with it (the kernel frees per-slot metadata on DELETE and MOVE).
        if (_counts.ContainsKey(old.PackedSlot)) Volatile.Write(ref _counts, _counts.Remove(old.PackedSlot));
        if (_accessTrapped.ContainsKey(old.PackedSlot)) Volatile.Write(ref _accessTrapped, _accessTrapped.Remove(old.PackedSlot));
        // Only now, with the kernel's acceptance behind us, is the removal certain.
        if (change.Kind == MemslotChangeKind.Delete || NotifierCount > 0) NotifyRemove(old.BaseGfn, old.PageCount);
    }
}
