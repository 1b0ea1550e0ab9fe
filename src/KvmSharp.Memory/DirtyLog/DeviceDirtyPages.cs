using System.Runtime.CompilerServices;
using System.Collections.Immutable;
using KvmSharp.Memory.Memslots;

namespace KvmSharp.Memory.DirtyLog;

/// <summary>
/// Pages written by KvmSharp's own devices (which the kernel cannot see), per user slot. Marking is
/// lock-free on any thread; a slot's bits are tied to its exact shape, so a slot that was deleted,
/// moved or toggled its logging starts afresh.
/// </summary>
internal sealed class DeviceDirtyPages
{
    private sealed class SlotBits(Memslot slot)
    {
        public readonly Memslot Slot = slot;
        public readonly ulong[] Words = new ulong[(slot.PageCount + 63) / 64];
    }

    private readonly object _gate = new();
    private ImmutableDictionary<uint, SlotBits> _slots = ImmutableDictionary<uint, SlotBits>.Empty;

    public void Mark(in Memslot slot, ulong pageIndex)
    {
        if (!Volatile.Read(ref _slots).TryGetValue(slot.PackedSlot, out var bits) || bits.Slot != slot) bits = BitsFor(slot);
        Interlocked.Or(ref bits.Words[pageIndex >> 6], 1UL << (int)(pageIndex & 63));
    }

    /// <summary>OR the slot's marked pages into <paramref name="bitmap"/> and clear them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void TakeInto(in Memslot slot, Span<ulong> bitmap)
    {
        if (!Volatile.Read(ref _slots).TryGetValue(slot.PackedSlot, out var bits) || bits.Slot != slot) return;
        var words = bits.Words;
        for (int i = 0; i < words.Length && i < bitmap.Length; i++)
        {
            if (Volatile.Read(ref words[i]) != 0) bitmap[i] |= Interlocked.Exchange(ref words[i], 0);
        }
    }

    private SlotBits BitsFor(in Memslot slot)
    {
        lock (_gate)
        {
            if (_slots.TryGetValue(slot.PackedSlot, out var bits) && bits.Slot == slot) return bits;
            bits = new SlotBits(slot);
            Volatile.Write(ref _slots, _slots.SetItem(slot.PackedSlot, bits));
            return bits;
        }
    }
}
