using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;

namespace KvmSharp.Memory.DirtyLog;

/// <summary>
/// The VM's dirty log over USER slot ids, whatever the mode (<see cref="DirtyLogMode"/>) and however
/// page tracking has carved the slot into kernel pieces. A harvest returns one bit per page of the
/// user slot for every page written since the previous harvest (or since the slot started logging)
/// by the guest, by KvmSharp on the guest's behalf (trapped writes to tracked pages), and by devices
/// (<see cref="MarkDirty"/>); the bits are cleared by the harvest. Slots must have
/// KVM_MEM_LOG_DIRTY_PAGES.
/// </summary>
public sealed class DirtyPageLog
{
    private readonly MemslotTable _memslots;
    private readonly CarvedMemslotBackend _carve;
    private readonly DirtyLogKernelBackend _kernel;
    private readonly DeviceDirtyPages _devices = new();

    public DirtyPageLog(MemslotTable memslots, CarvedMemslotBackend carve, DirtyLogKernelBackend kernel)
    {
        _memslots = memslots;
        _carve = carve;
        _kernel = kernel;
    }

    public DirtyLogMode Mode => _kernel.Mode;

    /// <summary>KVM_EXIT_DIRTY_RING_FULL exits handled (Ring mode).</summary>
    public long RingFullExits => _kernel.Rings?.RingFullExits ?? 0;

    /// <summary>Ring entries harvested so far (Ring mode).</summary>
    public long RingEntriesHarvested => _kernel.Rings?.EntriesHarvested ?? 0;

    /// <summary>Ring entries that named no logged slot (a slot changed under a running vCPU); normally 0.</summary>
    public long RingEntriesOutsideSlots => _kernel.Rings?.EntriesOutsideSlots ?? 0;

    /// <summary>A vCPU now exists: in Ring mode its ring joins the harvest. Call on creation, before it runs.</summary>
    public void AttachVcpu(KvmVcpu vcpu)
    {
        if (_kernel.Rings is not { } rings) return;
        rings.Attach(vcpu.DirtyRing ?? throw new InvalidOperationException($"vCPU {vcpu.Id} has no dirty ring though the VM logs into rings"));
    }

    /// <summary>
    /// On the vCPU thread, for KVM_EXIT_DIRTY_RING_FULL: harvest and recycle the rings, then true (resume
    /// the vCPU). False when the ring stays full with nothing to harvest, i.e. the kernel overran it and
    /// entries were lost: the VM should end rather than spin. Allocation-free.
    /// </summary>
    public bool OnDirtyRingFull(int vcpuId) => _kernel.Rings?.OnRingFull() ?? false;

    /// <summary>
    /// Record that a device (not the guest's CPU) wrote [<paramref name="gpa"/>, +<paramref name="length"/>):
    /// the pages appear in the next harvest of the logged user slots that map them. Pages no slot maps,
    /// or in slots that do not log, are ignored. Lock-free; any thread.
    /// </summary>
    public void MarkDirty(ulong gpa, ulong length, int addressSpace = 0)
    {
        if (length == 0) return;
        if (gpa + (length - 1) < gpa) throw new ArgumentOutOfRangeException(nameof(length), $"gpa 0x{gpa:x} + length 0x{length:x} wraps around the address space");
        var snapshot = _memslots.Current;
        ulong last = (gpa + (length - 1)) >> Memslot.PageShift;
        for (ulong gfn = gpa >> Memslot.PageShift; gfn <= last;)
        {
            if (!snapshot.TryFindByGfn(addressSpace, gfn, out var slot))
            {
                gfn++;
                continue;
            }
            // One lookup per slot, not per page: a slot that does not log is skipped whole.
            ulong slotLast = Math.Min(last, slot.BaseGfn + slot.PageCount - 1);
            if ((slot.Flags & KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES) != 0)
                for (ulong page = gfn; page <= slotLast; page++) _devices.Mark(slot, page - slot.BaseGfn);
            gfn = slotLast + 1;
        }
    }

    /// <summary>Harvest user slot <paramref name="id"/>: a new bitmap, one bit per page.</summary>
    public ulong[] Harvest(ushort id, ushort addressSpace = 0)
    {
        var slot = LoggedSlot(id, addressSpace);
        var bitmap = new ulong[(slot.PageCount + 63) / 64];
        Harvest(id, bitmap, addressSpace);
        return bitmap;
    }

    /// <summary>
    /// Harvest user slot <paramref name="id"/> into <paramref name="bitmap"/> (at least one word per 64
    /// pages; words beyond the slot are left alone). Throws <see cref="MemslotRefusedException"/> (EINVAL,
    /// ENOENT) for a slot that does not exist or does not log, <see cref="KvmException"/> when the kernel fails.
    /// </summary>
    public void Harvest(ushort id, Span<ulong> bitmap, ushort addressSpace = 0)
    {
        lock (_memslots.WriteLock)
        {
            var slot = LoggedSlot(id, addressSpace);
            int words = (int)((slot.PageCount + 63) / 64);
            if (bitmap.Length < words)
                throw new ArgumentException($"slot {id} has {slot.PageCount} pages: the bitmap needs {words} words, not {bitmap.Length}", nameof(bitmap));
            var target = bitmap[..words];
            int result = _carve.GetDirtyLog(slot.PackedSlot, target);
            if (result < 0) throw new KvmException(OperationName, -result, $"slot {id} (as {addressSpace})");
            _devices.TakeInto(slot, target);
        }
    }

    private string OperationName => Mode switch
    {
        DirtyLogMode.Ring => "KVM_RESET_DIRTY_RINGS",
        DirtyLogMode.ManualProtect => "KVM_GET_DIRTY_LOG/KVM_CLEAR_DIRTY_LOG",
        _ => "KVM_GET_DIRTY_LOG",
    };

    private Memslot LoggedSlot(ushort id, ushort addressSpace)
    {
        var request = MemslotRequest.Delete(id, addressSpace);
        if (addressSpace >= _memslots.Limits.AddressSpaces || id >= _memslots.Limits.SlotsPerAddressSpace)
            throw new MemslotRefusedException(request, Errno.EINVAL, $"slot {id} in address space {addressSpace} is out of range", false);
        if (_memslots.Current.FindById(addressSpace, id) is not { } slot || (slot.Flags & KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES) == 0)
            throw new MemslotRefusedException(request, Errno.ENOENT, $"slot {id} does not exist or does not log dirty pages (KVM_MEM_LOG_DIRTY_PAGES)", false);
        return slot;
    }
}
