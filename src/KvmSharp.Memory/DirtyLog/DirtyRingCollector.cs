using System.Runtime.CompilerServices;
using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;

namespace KvmSharp.Memory.DirtyLog;

/// <summary>
/// Reads every vCPU's dirty ring into per-kernel-slot bitmaps (ring entries name kernel slots, which
/// the carve maps back to user slots), then issues KVM_RESET_DIRTY_RINGS. Everything here runs under
/// one leaf lock: a vCPU thread draining on KVM_EXIT_DIRTY_RING_FULL, a harvest, and a memslot change
/// (which drains first, so entries are attributed to the layout they were logged under). Nothing is
/// awaited while the lock is held. Draining allocates nothing.
/// </summary>
internal sealed unsafe class DirtyRingCollector
{
    private sealed class SlotBits(ulong pages)
    {
        public readonly ulong Pages = pages;
        public readonly ulong[] Words = new ulong[(pages + 63) / 64];
        /// <summary>False while every word is zero (a take then skips the copy).</summary>
        public bool Any;
    }

    private readonly object _gate = new();
    private readonly KvmVm _vm;
    private readonly Dictionary<uint, SlotBits> _slots = new();
    private KvmDirtyRing[] _rings = [];
    private uint _lastSlot = uint.MaxValue;
    private SlotBits? _lastBits;
    private long _ringFullExits;
    private long _entries;
    private long _entriesOutsideSlots;
    private int _fruitlessFullExits;

    /// <summary>
    /// Ring-full exits in a row that found nothing to harvest before a vCPU is given up on. One can be
    /// legitimate (another thread drained that ring first); a long run means the kernel overran the
    /// ring (its entries are lost and it can never be reset), and resuming would only exit again.
    /// </summary>
    public const int MaxFruitlessFullExits = 1000;

    public DirtyRingCollector(KvmVm vm) => _vm = vm;

    public long RingFullExits => Interlocked.Read(ref _ringFullExits);
    public long EntriesHarvested => Interlocked.Read(ref _entries);

    /// <summary>Entries naming no logged kernel slot, or an offset past its end (a slot changed under a running vCPU).</summary>
    public long EntriesOutsideSlots => Interlocked.Read(ref _entriesOutsideSlots);

    public void Attach(KvmDirtyRing ring)
    {
        lock (_gate) _rings = [.. _rings, ring];
    }

    /// <summary>A kernel slot was (re)defined: keep its bits only if it still logs the same range.</summary>
    public void SlotChanged(in kvm_userspace_memory_region? before, in kvm_userspace_memory_region region)
    {
        lock (_gate)
        {
            _lastSlot = uint.MaxValue;
            _lastBits = null;
            bool logs = region.memory_size > 0 && (region.flags & KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES) != 0;
            bool sameRange = before is { } old && old.guest_phys_addr == region.guest_phys_addr && old.memory_size == region.memory_size
                && (old.flags & KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES) != 0;
            if (!logs) _slots.Remove(region.slot);
            else if (!sameRange || !_slots.ContainsKey(region.slot)) _slots[region.slot] = new SlotBits(region.memory_size >> Memslot.PageShift);
        }
    }

    /// <summary>Harvest every ring now (before a memslot change, or from a harvest).</summary>
    public void Drain()
    {
        lock (_gate) DrainLocked();
    }

    /// <summary>
    /// KVM_EXIT_DIRTY_RING_FULL on a vCPU thread: empty the rings and recycle them, so the vCPU can
    /// resume. False when ring-full exits keep coming with nothing to harvest (see <see cref="MaxFruitlessFullExits"/>).
    /// </summary>
    public bool OnRingFull()
    {
        Interlocked.Increment(ref _ringFullExits);
        lock (_gate)
        {
            if (DrainLocked()) _fruitlessFullExits = 0;
            else if (++_fruitlessFullExits > MaxFruitlessFullExits) return false;
            return true;
        }
    }

    /// <summary>
    /// Move the kernel slot's bits into <paramref name="bitmap"/>, then drain: this slot's entries go
    /// straight into <paramref name="bitmap"/>, other slots' into their pending bits (0, or -ENOENT
    /// when the slot does not log).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int Take(uint packedSlot, Span<ulong> bitmap)
    {
        lock (_gate)
        {
            if (!_slots.TryGetValue(packedSlot, out var bits)) return -Errno.ENOENT;
            var words = bits.Words;
            int count = Math.Min(bitmap.Length, words.Length);
            if (bits.Any)
            {
                // One pass: move each word out, touching the pending word again only where bits were set.
                for (int i = 0; i < count; i++)
                {
                    ulong word = words[i];
                    bitmap[i] = word;
                    if (word != 0) words[i] = 0;
                }
                bits.Any = false;
            }
            else
            {
                bitmap[..count].Clear();
            }
            bitmap[count..].Clear();
            fixed (ulong* target = bitmap)
            {
                DrainLocked(packedSlot, target, Math.Min(bits.Pages, (ulong)count * 64));
            }
            return 0;
        }
    }

    private bool DrainLocked() => DrainLocked(uint.MaxValue, null, 0);

    // True when anything was harvested. Entries of targetSlot go to target (targetPages bits), others to their pending bits.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private bool DrainLocked(uint targetSlot, ulong* target, ulong targetPages)
    {
        bool harvested = false;
        var sink = new RecordingSink(this, targetSlot, target, targetPages);
        foreach (var ring in _rings)
        {
            int taken = ring.Harvest(ref sink);
            harvested |= taken > 0;
            _entries += taken;
        }
        if (!harvested) return false;
        int result = _vm.TryResetDirtyRings();
        if (result < 0) throw new KvmException("KVM_RESET_DIRTY_RINGS", -result);
        return true;
    }

    private readonly struct RecordingSink(DirtyRingCollector collector, uint targetSlot, ulong* target, ulong targetPages) : IDirtyGfnSink
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Add(uint slot, ulong offset)
        {
            if (slot == targetSlot && offset < targetPages) target[offset >> 6] |= 1UL << (int)(offset & 63);
            else collector.Record(slot, offset);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Record(uint slot, ulong offset)
    {
        if (slot != _lastSlot)
        {
            _lastBits = _slots.TryGetValue(slot, out var found) ? found : null;
            _lastSlot = slot;
        }
        if (_lastBits is not { } bits || offset >= bits.Pages)
        {
            _entriesOutsideSlots++;
            return;
        }
        bits.Words[offset >> 6] |= 1UL << (int)(offset & 63);
        bits.Any = true;
    }
}
