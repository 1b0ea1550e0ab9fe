using System.Runtime.CompilerServices;
using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;

namespace KvmSharp.Memory.DirtyLog;

/// <summary>
/// The kernel memslots under the carve, with dirty logging in the VM's mode. It sees every kernel
/// slot (a user slot's pieces included), so <see cref="GetDirtyLog"/> answers per kernel slot in
/// every mode and the carve merges the pieces back into the user's slot as before:
/// Bitmap = KVM_GET_DIRTY_LOG; ManualProtect = KVM_GET_DIRTY_LOG then KVM_CLEAR_DIRTY_LOG of exactly
/// the reported pages; Ring = the slot's share of the drained rings. Runs under the memslot write lock.
/// </summary>
public sealed class DirtyLogKernelBackend : IMemslotBackend
{
    private readonly KvmVm _vm;
    private readonly IMemslotBackend _kernel;
    private readonly Dictionary<uint, kvm_userspace_memory_region> _slots = new();

    private DirtyLogKernelBackend(KvmVm vm, IMemslotBackend kernel, DirtyLogMode mode)
    {
        _vm = vm;
        _kernel = kernel;
        Mode = mode;
        if (mode == DirtyLogMode.Ring) Rings = new DirtyRingCollector(vm);
    }

    public DirtyLogMode Mode { get; }

    internal DirtyRingCollector? Rings { get; }

    /// <summary>
    /// Choose the mode (<see cref="DirtyLogOptions.Mode"/>, else ManualProtect where offered, else Bitmap)
    /// and enable it on <paramref name="vm"/>, which must have no vCPU and no memslot yet.
    /// Throws <see cref="ArgumentException"/> naming the option when the kernel cannot do what was asked.
    /// </summary>
    public static DirtyLogKernelBackend Create(KvmVm vm, IMemslotBackend kernel, DirtyLogOptions options)
    {
        if (options.Validate() is { } invalid) throw new ArgumentException(invalid);
        const ulong manualFlags = KvmDirtyLogProtectFlags.KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KvmDirtyLogProtectFlags.KVM_DIRTY_LOG_INITIALLY_SET;
        int manual = vm.CheckExtension(KvmCap.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
        var mode = options.Mode ?? (((ulong)manual & manualFlags) == manualFlags ? DirtyLogMode.ManualProtect : DirtyLogMode.Bitmap);
        switch (mode)
        {
            case DirtyLogMode.ManualProtect:
                if (((ulong)manual & manualFlags) != manualFlags)
                    throw new ArgumentException($"dirty log mode ManualProtect: this KVM reports KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2={manual} (needs 3); use Bitmap");
                vm.EnableManualDirtyLogProtect(manualFlags);
                break;
            case DirtyLogMode.Ring:
                int maxBytes = Math.Max(vm.CheckExtension(KvmCap.KVM_CAP_DIRTY_LOG_RING_ACQ_REL), vm.CheckExtension(KvmCap.KVM_CAP_DIRTY_LOG_RING));
                int bytes = options.RingEntries * 16;
                if (maxBytes == 0)
                    throw new ArgumentException("dirty log mode Ring: this KVM has no KVM_CAP_DIRTY_LOG_RING; use ManualProtect or Bitmap");
                if (bytes > maxBytes)
                    throw new ArgumentException($"dirty ring entries: {options.RingEntries} ({bytes} bytes) exceed this KVM's maximum of {maxBytes / 16} entries ({maxBytes} bytes)");
                try
                {
                    vm.EnableDirtyRing(bytes);
                }
                catch (KvmException e) when (e.Errno == Errno.EINVAL)
                {
                    throw new ArgumentException($"dirty ring entries: this KVM refused a ring of {options.RingEntries} entries ({bytes} bytes) with EINVAL; give more (it reserves entries of its own)", e);
                }
                break;
        }
        return new DirtyLogKernelBackend(vm, kernel, mode);
    }

    public int SetUserMemoryRegion(in kvm_userspace_memory_region region)
    {
        // Ring entries name kernel slots: read them before a slot changes shape or goes away.
        Rings?.Drain();
        bool known = _slots.TryGetValue(region.slot, out var before);
        int result = _kernel.SetUserMemoryRegion(region);
        if (result != 0) return result;
        if (region.memory_size == 0) _slots.Remove(region.slot);
        else _slots[region.slot] = region;
        Rings?.SlotChanged(known ? before : null, region);

        bool logs = region.memory_size > 0 && (region.flags & KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES) != 0;
        bool startsLogging = logs && (!known || (before.flags & KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES) == 0 || before.guest_phys_addr != region.guest_phys_addr);
        // INITIALLY_SET marks every page of a newly logged slot dirty; a harvest must report only pages
        // written since logging started (as Bitmap and Ring do), and a carve's new pieces must not look
        // written at all. So report nothing yet: clear (and protect) the whole new slot now.
        if (Mode == DirtyLogMode.ManualProtect && startsLogging) ClearWholeSlot(region);
        return 0;
    }

    public int GetDirtyLog(uint packedSlot, Span<ulong> bitmap)
    {
        switch (Mode)
        {
            case DirtyLogMode.Ring:
                return Rings!.Take(packedSlot, bitmap);
            case DirtyLogMode.ManualProtect:
                int result = _vm.TryGetDirtyLog(packedSlot, bitmap);
                if (result < 0) return result;
                if (!_slots.TryGetValue(packedSlot, out var slot)) return -Errno.ENOENT;
                return ClearReported(packedSlot, slot.memory_size >> Memslot.PageShift, bitmap);
            default:
                return _kernel.GetDirtyLog(packedSlot, bitmap);
        }
    }

    /// <summary>KVM_CLEAR_DIRTY_LOG over the words from the first to the last non-zero one: only reported pages are protected.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal int ClearReported(uint packedSlot, ulong slotPages, ReadOnlySpan<ulong> bitmap)
    {
        int words = (int)Math.Min((ulong)bitmap.Length, (slotPages + 63) / 64);
        int first = 0;
        while (first < words && bitmap[first] == 0) first++;
        if (first == words) return 0;
        int last = words - 1;
        while (bitmap[last] == 0) last--;
        ulong firstPage = (ulong)first * 64;
        ulong pages = Math.Min((ulong)(last + 1) * 64, slotPages) - firstPage;
        return _vm.TryClearDirtyLog(packedSlot, firstPage, (uint)pages, bitmap[first..(last + 1)]);
    }

    private void ClearWholeSlot(in kvm_userspace_memory_region region)
    {
        ulong pages = region.memory_size >> Memslot.PageShift;
        var all = new ulong[(pages + 63) / 64];
        Array.Fill(all, ulong.MaxValue);
        int result = ClearReported(region.slot, pages, all);
        if (result < 0) throw new KvmException("KVM_CLEAR_DIRTY_LOG", -result, $"slot 0x{region.slot:x} as it starts logging");
    }
}
