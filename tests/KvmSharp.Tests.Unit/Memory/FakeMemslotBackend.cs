using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;

namespace KvmSharp.Tests.Unit.Memory;

/// <summary>
/// Stands in for the kernel behind a <see cref="MemslotTable"/>: records every call, keeps its own
/// view of the kernel's slots (packed slot number to region), and can be told to refuse the next call
/// with an errno, as a kernel that disagrees with KvmSharp's rules would.
/// </summary>
internal sealed class FakeMemslotBackend : IMemslotBackend
{
    private readonly Dictionary<uint, kvm_userspace_memory_region> _kernelSlots = [];
    private int _failNextSetWith;
    private int _failNextDirtyLogWith;

    /// <summary>Every KVM_SET_USER_MEMORY_REGION the table issued, refused ones included, in order.</summary>
    public List<kvm_userspace_memory_region> SetCalls { get; } = [];

    /// <summary>Every KVM_GET_DIRTY_LOG: the packed slot and the bitmap length in words.</summary>
    public List<(uint PackedSlot, int BitmapWords)> DirtyLogCalls { get; } = [];

    /// <summary>Pattern written into every word of a dirty-log bitmap that is not refused.</summary>
    public ulong DirtyWordPattern { get; set; } = 0xa5a5_a5a5_a5a5_a5a5;

    public int TotalCalls => SetCalls.Count + DirtyLogCalls.Count;

    /// <summary>The next KVM_SET_USER_MEMORY_REGION returns -<paramref name="errno"/> and changes nothing.</summary>
    public void FailNextSetWith(int errno) => _failNextSetWith = errno;

    /// <summary>The next KVM_GET_DIRTY_LOG returns -<paramref name="errno"/>.</summary>
    public void FailNextDirtyLogWith(int errno) => _failNextDirtyLogWith = errno;

    public IReadOnlyDictionary<uint, kvm_userspace_memory_region> KernelSlots => _kernelSlots;

    /// <summary>A comparable copy of the kernel's slots, sorted by packed slot number.</summary>
    public IReadOnlyList<(uint Slot, uint Flags, ulong Gpa, ulong Size, ulong Hva)> KernelState() =>
        _kernelSlots.Values
            .OrderBy(r => r.slot)
            .Select(r => (r.slot, r.flags, r.guest_phys_addr, r.memory_size, r.userspace_addr))
            .ToList();

    public int SetUserMemoryRegion(in kvm_userspace_memory_region region)
    {
        SetCalls.Add(region);
        if (_failNextSetWith != 0)
        {
            int errno = _failNextSetWith;
            _failNextSetWith = 0;
            return -errno;
        }

        if (region.memory_size == 0)
        {
            _kernelSlots.Remove(region.slot);
        }
        else
        {
            _kernelSlots[region.slot] = region;
        }

        return 0;
    }

    public int GetDirtyLog(uint packedSlot, Span<ulong> bitmap)
    {
        DirtyLogCalls.Add((packedSlot, bitmap.Length));
        if (_failNextDirtyLogWith != 0)
        {
            int errno = _failNextDirtyLogWith;
            _failNextDirtyLogWith = 0;
            return -errno;
        }

        bitmap.Fill(DirtyWordPattern);
        return 0;
    }
}
