using System.Runtime.InteropServices;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Kvm;

/// <summary>Owns a VM file descriptor: memslots, vCPUs, in-kernel devices.</summary>
public sealed unsafe class KvmVm : IDisposable
{
    private int _fd;

    internal KvmVm(KvmSystem system, int fd)
    {
        System = system;
        _fd = fd;
        UsesMemoryRegion2 = CheckExtension(KvmCap.KVM_CAP_USER_MEMORY2) > 0;
    }

    /// <summary>True when memslots go through KVM_SET_USER_MEMORY_REGION2 (KVM_CAP_USER_MEMORY2), else the old ioctl.</summary>
    public bool UsesMemoryRegion2 { get; }

    /// <summary>Bytes of dirty ring per vCPU once <see cref="EnableDirtyRing"/> succeeded; 0 when the VM logs into bitmaps.</summary>
    public int DirtyRingBytes { get; private set; }

    /// <summary>True when KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 is enabled: KVM_GET_DIRTY_LOG no longer clears.</summary>
    public bool ManualDirtyLogProtect { get; private set; }

    public KvmSystem System { get; }
    internal int Fd => _fd >= 0 ? _fd : throw new ObjectDisposedException(nameof(KvmVm));

    /// <summary>KVM_CHECK_EXTENSION on the VM fd (answers that depend on the VM, e.g. address spaces).</summary>
    public int CheckExtension(KvmCap capability)
    {
        int result = NativeIoctl.Invoke(Fd, KvmIoctls.KVM_CHECK_EXTENSION, (nint)capability);
        return result < 0 ? 0 : result;
    }

    /// <summary>
    /// KVM_SET_USER_MEMORY_REGION2 where the kernel has it, else KVM_SET_USER_MEMORY_REGION; returns 0
    /// or -errno so callers can surface the kernel's verdict. The verdicts are the old ioctl's: a flag
    /// beyond LOG_DIRTY_PAGES|READONLY (KVM_MEM_GUEST_MEMFD, which needs REGION2's guest_memfd fields)
    /// goes through the old ioctl, which refuses it up front, where REGION2 would first check overlaps
    /// (EEXIST) and only then the missing guest_memfd (EINVAL).
    /// </summary>
    public int TrySetUserMemoryRegion(in kvm_userspace_memory_region region) =>
        UsesMemoryRegion2 && (region.flags & ~LegacyMemoryFlags) == 0 ? TrySetUserMemoryRegion2(region) : TrySetUserMemoryRegion1(region);

    private const uint LegacyMemoryFlags = KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES | KvmMemFlags.KVM_MEM_READONLY;

    /// <summary>The old KVM_SET_USER_MEMORY_REGION, whatever the kernel offers.</summary>
    public int TrySetUserMemoryRegion1(in kvm_userspace_memory_region region)
    {
        fixed (kvm_userspace_memory_region* p = &region)
        {
            return NativeIoctl.Invoke(Fd, KvmIoctls.KVM_SET_USER_MEMORY_REGION, p);
        }
    }

    /// <summary>KVM_SET_USER_MEMORY_REGION2 with the old struct's fields (pads and guest_memfd zero); 0 or -errno.</summary>
    public int TrySetUserMemoryRegion2(in kvm_userspace_memory_region region)
    {
        var region2 = new kvm_userspace_memory_region2
        {
            slot = region.slot,
            flags = region.flags,
            guest_phys_addr = region.guest_phys_addr,
            memory_size = region.memory_size,
            userspace_addr = region.userspace_addr,
        };
        return NativeIoctl.Invoke(Fd, KvmIoctls.KVM_SET_USER_MEMORY_REGION2, &region2);
    }

    /// <summary>KVM_GET_DIRTY_LOG into <paramref name="bitmap"/> (one bit per page of the slot, rounded to 64).</summary>
    public void GetDirtyLog(uint slot, Span<ulong> bitmap)
    {
        int result = TryGetDirtyLog(slot, bitmap);
        if (result < 0) throw new KvmException("KVM_GET_DIRTY_LOG", -result, $"slot 0x{slot:x}");
    }

    /// <summary>KVM_GET_DIRTY_LOG; 0 or -errno (ENOENT: no such slot, or it does not log). Allocation-free.</summary>
    public int TryGetDirtyLog(uint slot, Span<ulong> bitmap)
    {
        fixed (ulong* bits = bitmap)
        {
            var log = new kvm_dirty_log { slot = slot, dirty_bitmap = (ulong)bits };
            return NativeIoctl.Invoke(Fd, KvmIoctls.KVM_GET_DIRTY_LOG, &log);
        }
    }

    /// <summary>
    /// KVM_CLEAR_DIRTY_LOG: clear and write-protect the pages whose bits are set in <paramref name="bitmap"/>,
    /// which starts at <paramref name="firstPage"/> of the slot. The kernel wants firstPage a multiple of 64
    /// and pageCount a multiple of 64 unless the range ends at the slot's end. 0 or -errno; allocation-free.
    /// </summary>
    public int TryClearDirtyLog(uint slot, ulong firstPage, uint pageCount, ReadOnlySpan<ulong> bitmap)
    {
        if ((ulong)bitmap.Length * 64 < pageCount) return -Errno.EINVAL;
        fixed (ulong* bits = bitmap)
        {
            var clear = new kvm_clear_dirty_log { slot = slot, first_page = firstPage, num_pages = pageCount, dirty_bitmap = (ulong)bits };
            return NativeIoctl.Invoke(Fd, KvmIoctls.KVM_CLEAR_DIRTY_LOG, &clear);
        }
    }

    /// <summary>
    /// KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) with <paramref name="flags"/>
    /// (KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, optionally KVM_DIRTY_LOG_INITIALLY_SET).
    /// </summary>
    public void EnableManualDirtyLogProtect(ulong flags)
    {
        EnableCap(KvmCap.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, flags);
        ManualDirtyLogProtect = true;
    }

    /// <summary>
    /// Turn on the per-vCPU dirty ring of <paramref name="bytes"/> (a power of two) before any vCPU exists:
    /// KVM_CAP_DIRTY_LOG_RING_ACQ_REL when offered, else KVM_CAP_DIRTY_LOG_RING (x86 orders both the same).
    /// From then on the VM's bitmap ioctls fail; every vCPU created maps its ring.
    /// </summary>
    public void EnableDirtyRing(int bytes)
    {
        var cap = CheckExtension(KvmCap.KVM_CAP_DIRTY_LOG_RING_ACQ_REL) > 0 ? KvmCap.KVM_CAP_DIRTY_LOG_RING_ACQ_REL : KvmCap.KVM_CAP_DIRTY_LOG_RING;
        EnableCap(cap, (ulong)bytes);
        DirtyRingBytes = bytes;
    }

    /// <summary>KVM_RESET_DIRTY_RINGS: recycle every entry userspace marked RESET (write-protecting those pages again); returns how many, or -errno.</summary>
    public int TryResetDirtyRings() => NativeIoctl.Invoke(Fd, KvmIoctls.KVM_RESET_DIRTY_RINGS, 0);

    public KvmVcpu CreateVcpu(int id)
    {
        int fd = NativeIoctl.Checked(Fd, KvmIoctls.KVM_CREATE_VCPU, id);
        try
        {
            return new KvmVcpu(this, id, fd, System.VcpuMmapSize, DirtyRingBytes);
        }
        catch
        {
            Posix.Close(fd);
            throw;
        }
    }

    /// <summary>KVM_SET_TSS_ADDR: three pages of guest-physical space Intel VMX needs for real mode.</summary>
    public void SetTssAddress(ulong address) => NativeIoctl.Checked(Fd, KvmIoctls.KVM_SET_TSS_ADDR, (nint)address);

    public void SetIdentityMapAddress(ulong address)
    {
        ulong value = address;
        NativeIoctl.Checked(Fd, KvmIoctls.KVM_SET_IDENTITY_MAP_ADDR, &value);
    }

    public void CreateIrqchip() => NativeIoctl.Checked(Fd, KvmIoctls.KVM_CREATE_IRQCHIP, 0);

    public void CreatePit2(uint flags = 0)
    {
        var config = new kvm_pit_config { flags = flags };
        NativeIoctl.Checked(Fd, KvmIoctls.KVM_CREATE_PIT2, &config);
    }

    /// <summary>KVM_REINJECT_CONTROL: whether the in-kernel PIT queues ticks the guest missed and replays them.</summary>
    public void SetPitReinject(bool reinject)
    {
        var control = new kvm_reinject_control { pit_reinject = reinject ? (byte)1 : (byte)0 };
        NativeIoctl.Checked(Fd, KvmIoctls.KVM_REINJECT_CONTROL, &control);
    }

    public void SetIrqLine(uint irq, bool level)
    {
        var line = new kvm_irq_level { irq = irq, level = level ? 1u : 0u };
        NativeIoctl.Checked(Fd, KvmIoctls.KVM_IRQ_LINE, &line);
    }

    /// <summary>
    /// KVM_IOEVENTFD: a guest write of <paramref name="length"/> bytes to <paramref name="address"/> (MMIO,
    /// or port I/O with <paramref name="pio"/>) signals <paramref name="eventFd"/> inside the kernel, with no
    /// exit to userspace; with <paramref name="datamatch"/> only writes of that value do.
    /// </summary>
    public void AssignIoeventfd(SafeHandle eventFd, ulong address, uint length, bool pio = false, ulong? datamatch = null) =>
        Ioeventfd(eventFd, address, length, pio, datamatch, deassign: false);

    /// <summary>KVM_IOEVENTFD with KVM_IOEVENTFD_FLAG_DEASSIGN: the same arguments as the assignment remove it.</summary>
    public void DeassignIoeventfd(SafeHandle eventFd, ulong address, uint length, bool pio = false, ulong? datamatch = null) =>
        Ioeventfd(eventFd, address, length, pio, datamatch, deassign: true);

    private void Ioeventfd(SafeHandle eventFd, ulong address, uint length, bool pio, ulong? datamatch, bool deassign)
    {
        bool added = false;
        try
        {
            eventFd.DangerousAddRef(ref added);
            var request = new kvm_ioeventfd
            {
                addr = address,
                len = length,
                fd = (int)eventFd.DangerousGetHandle(),
                datamatch = datamatch ?? 0,
                flags = (pio ? KvmIoeventfdFlags.KVM_IOEVENTFD_FLAG_PIO : 0)
                    | (datamatch is null ? 0 : KvmIoeventfdFlags.KVM_IOEVENTFD_FLAG_DATAMATCH)
                    | (deassign ? KvmIoeventfdFlags.KVM_IOEVENTFD_FLAG_DEASSIGN : 0),
            };
            int result = NativeIoctl.Invoke(Fd, KvmIoctls.KVM_IOEVENTFD, &request);
            if (result < 0)
                throw new KvmException("KVM_IOEVENTFD", -result, $"{(deassign ? "deassign" : "assign")} {(pio ? "port" : "MMIO")} 0x{address:x} length {length}");
        }
        finally
        {
            if (added) eventFd.DangerousRelease();
        }
    }

    /// <summary>KVM_IRQFD: a write to <paramref name="eventFd"/> injects <paramref name="gsi"/> through the GSI routing table.</summary>
    public void AssignIrqfd(SafeHandle eventFd, uint gsi) => Irqfd(eventFd, gsi, 0);

    /// <summary>KVM_IRQFD with KVM_IRQFD_FLAG_DEASSIGN.</summary>
    public void DeassignIrqfd(SafeHandle eventFd, uint gsi) => Irqfd(eventFd, gsi, KvmIrqfdFlags.KVM_IRQFD_FLAG_DEASSIGN);

    private void Irqfd(SafeHandle eventFd, uint gsi, uint flags)
    {
        bool added = false;
        try
        {
            eventFd.DangerousAddRef(ref added);
            var request = new kvm_irqfd { fd = (uint)eventFd.DangerousGetHandle(), gsi = gsi, flags = flags };
            int result = NativeIoctl.Invoke(Fd, KvmIoctls.KVM_IRQFD, &request);
            if (result < 0) throw new KvmException("KVM_IRQFD", -result, $"{(flags == 0 ? "assign" : "deassign")} GSI {gsi}");
        }
        finally
        {
            if (added) eventFd.DangerousRelease();
        }
    }

    /// <summary>
    /// KVM_SET_GSI_ROUTING: replace the whole routing table with <paramref name="routing"/>, a header
    /// followed by its nr entries in native memory. 0 or -errno; allocation-free.
    /// </summary>
    public int TrySetGsiRouting(kvm_irq_routing* routing) => NativeIoctl.Invoke(Fd, KvmIoctls.KVM_SET_GSI_ROUTING, routing);

    /// <summary>KVM_SET_GSI_ROUTING with <paramref name="entries"/> (the table is replaced, not extended).</summary>
    public void SetGsiRouting(ReadOnlySpan<kvm_irq_routing_entry> entries)
    {
        nuint bytes = (nuint)(sizeof(kvm_irq_routing) + entries.Length * sizeof(kvm_irq_routing_entry));
        var table = (kvm_irq_routing*)NativeMemory.AllocZeroed(bytes);
        try
        {
            table->nr = (uint)entries.Length;
            entries.CopyTo(new Span<kvm_irq_routing_entry>(table + 1, entries.Length));
            int result = TrySetGsiRouting(table);
            if (result < 0) throw new KvmException("KVM_SET_GSI_ROUTING", -result, $"{entries.Length} routes");
        }
        finally
        {
            NativeMemory.Free(table);
        }
    }

    /// <summary>
    /// KVM_SIGNAL_MSI: inject the MSI message now. Returns &gt;0 when delivered, 0 when the guest blocked
    /// it (e.g. a masked or absent destination), or -errno; allocation-free.
    /// </summary>
    public int TrySignalMsi(ulong address, uint data)
    {
        var msi = new kvm_msi { address_lo = (uint)address, address_hi = (uint)(address >> 32), data = data };
        return NativeIoctl.Invoke(Fd, KvmIoctls.KVM_SIGNAL_MSI, &msi);
    }

    public void EnableCap(KvmCap capability, ulong arg0 = 0)
    {
        var enable = new kvm_enable_cap { cap = (uint)capability };
        enable.args[0] = arg0;
        NativeIoctl.Checked(Fd, KvmIoctls.KVM_ENABLE_CAP, &enable);
    }

    public void Dispose()
    {
        Posix.Close(Interlocked.Exchange(ref _fd, -1));
    }
}
