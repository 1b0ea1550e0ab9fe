using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;

namespace KvmSharp.Tests.Integration.Memslots;

/// <summary>
/// Sits between the carving and the kernel and records the slots the kernel accepted, call by
/// call: the kernel view reconstructed from what was actually handed to it (refused calls change
/// nothing, as in the kernel).
/// </summary>
public sealed class KernelSlotRecorder(IMemslotBackend kernel) : IMemslotBackend
{
    private readonly Dictionary<uint, kvm_userspace_memory_region> _slots = [];

    public long Calls { get; private set; }

    public int Count => _slots.Count;

    public bool Holds(uint packedSlot) => _slots.ContainsKey(packedSlot);

    public IEnumerable<KernelSlotPiece> Slots() => _slots.Values.Select(r =>
        new KernelSlotPiece((ushort)r.slot, (ushort)(r.slot >> 16), r.guest_phys_addr, r.memory_size, r.userspace_addr, r.flags));

    public int SetUserMemoryRegion(in kvm_userspace_memory_region region)
    {
        Calls++;
        int result = kernel.SetUserMemoryRegion(region);
        if (result != 0) return result;
        if (region.memory_size == 0) _slots.Remove(region.slot);
        else _slots[region.slot] = region;
        return 0;
    }

    public int GetDirtyLog(uint packedSlot, Span<ulong> bitmap) => kernel.GetDirtyLog(packedSlot, bitmap);
}
