using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;

namespace KvmSharp.Tests.Unit.PageTracking;

/// <summary>One kernel memslot as the fake kernel holds it.</summary>
internal readonly record struct KernelSlot(uint Slot, uint Flags, ulong Gpa, ulong Size, ulong Hva)
{
    public ushort Id => (ushort)Slot;
    public ushort AddressSpace => (ushort)(Slot >> 16);
    public bool ReadOnly => (Flags & KvmMemFlags.KVM_MEM_READONLY) != 0;

    public override string ToString() =>
        $"kernel slot {Id} (as {AddressSpace}) gpa 0x{Gpa:x}+0x{Size:x} hva 0x{Hva:x} flags 0x{Flags:x}";
}

/// <summary>
/// The kernel under a <see cref="Memory.PageTracking.CarvedMemslotBackend"/>: keeps its slots
/// (packed id → region) and refuses what KVM_SET_USER_MEMORY_REGION refuses for a well-formed
/// request (deleting a missing slot, resizing, changing the hva, toggling READONLY, overlapping
/// another slot of the same address space), so a layout bug in the carving shows up as the errno a
/// real kernel would return. The Nth call from now can be made to fail with a chosen errno.
/// KVM_GET_DIRTY_LOG returns the bits a test marked, then clears them, as the kernel does.
/// </summary>
internal sealed class RecordingKernel : IMemslotBackend
{
    private readonly object _lock = new();
    private readonly Dictionary<uint, kvm_userspace_memory_region> _slots = [];
    private readonly Dictionary<uint, ulong[]> _dirty = [];
    private readonly List<kvm_userspace_memory_region> _setCalls = [];
    private int _failCountdown;
    private int _failErrno;

    /// <summary>Every KVM_SET_USER_MEMORY_REGION, refused ones included.</summary>
    public IReadOnlyList<kvm_userspace_memory_region> SetCalls
    {
        get { lock (_lock) return _setCalls.ToList(); }
    }

    public int SetCallCount
    {
        get { lock (_lock) return _setCalls.Count; }
    }

    /// <summary>True while an armed failure has not been consumed yet.</summary>
    public bool FailureArmed
    {
        get { lock (_lock) return _failCountdown > 0; }
    }

    /// <summary>The <paramref name="n"/>th KVM_SET_USER_MEMORY_REGION from now (1 = the next) returns -errno and changes nothing.</summary>
    public void FailSetCall(int n, int errno)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        lock (_lock)
        {
            _failCountdown = n;
            _failErrno = errno;
        }
    }

    /// <summary>The kernel's slots, sorted by packed slot number.</summary>
    public IReadOnlyList<KernelSlot> Slots()
    {
        lock (_lock)
        {
            return _slots.Values.OrderBy(r => r.slot)
                .Select(r => new KernelSlot(r.slot, r.flags, r.guest_phys_addr, r.memory_size, r.userspace_addr))
                .ToList();
        }
    }

    /// <summary>The kernel's slots of one address space, sorted by guest address.</summary>
    public IReadOnlyList<KernelSlot> SlotsByGpa(ushort addressSpace) =>
        Slots().Where(s => s.AddressSpace == addressSpace).OrderBy(s => s.Gpa).ToList();

    /// <summary>The kernel's own dirty bits for a slot: what the next KVM_GET_DIRTY_LOG of it returns.</summary>
    public void MarkDirty(uint packedSlot, params ulong[] pageIndexes)
    {
        lock (_lock)
        {
            if (!_slots.TryGetValue(packedSlot, out var region))
                throw new InvalidOperationException($"no kernel slot 0x{packedSlot:x} to mark dirty");
            ulong pages = region.memory_size >> Memslot.PageShift;
            if (!_dirty.TryGetValue(packedSlot, out var bits))
                _dirty[packedSlot] = bits = new ulong[(pages + 63) / 64];
            foreach (ulong page in pageIndexes)
            {
                if (page >= pages) throw new ArgumentOutOfRangeException(nameof(pageIndexes), $"page {page} is outside kernel slot 0x{packedSlot:x}");
                bits[page / 64] |= 1UL << (int)(page % 64);
            }
        }
    }

    public int SetUserMemoryRegion(in kvm_userspace_memory_region region)
    {
        lock (_lock)
        {
            _setCalls.Add(region);
            if (_failCountdown > 0 && --_failCountdown == 0) return -_failErrno;

            bool exists = _slots.TryGetValue(region.slot, out var old);
            if (region.memory_size == 0)
            {
                if (!exists) return -Errno.EINVAL;
                _slots.Remove(region.slot);
                _dirty.Remove(region.slot);
                return 0;
            }

            if (exists)
            {
                if (old.memory_size != region.memory_size || old.userspace_addr != region.userspace_addr) return -Errno.EINVAL;
                if (((old.flags ^ region.flags) & KvmMemFlags.KVM_MEM_READONLY) != 0) return -Errno.EINVAL;
                if (old.guest_phys_addr == region.guest_phys_addr)
                {
                    _slots[region.slot] = region; // FLAGS_ONLY or no change
                    return 0;
                }
            }

            ulong start = region.guest_phys_addr, end = start + region.memory_size;
            foreach (var other in _slots.Values)
            {
                if (other.slot == region.slot || (other.slot >> 16) != (region.slot >> 16)) continue;
                if (other.guest_phys_addr < end && start < other.guest_phys_addr + other.memory_size) return -Errno.EEXIST;
            }
            _slots[region.slot] = region;
            _dirty.Remove(region.slot);
            return 0;
        }
    }

    public int GetDirtyLog(uint packedSlot, Span<ulong> bitmap)
    {
        lock (_lock)
        {
            if (!_slots.TryGetValue(packedSlot, out var region) || (region.flags & KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES) == 0)
                return -Errno.ENOENT;
            bitmap.Clear();
            if (_dirty.Remove(packedSlot, out var bits))
                bits.AsSpan(0, Math.Min(bits.Length, bitmap.Length)).CopyTo(bitmap);
            return 0;
        }
    }
}
