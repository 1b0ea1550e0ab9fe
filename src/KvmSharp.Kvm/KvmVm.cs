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
    }

    public KvmSystem System { get; }
    internal int Fd => _fd >= 0 ? _fd : throw new ObjectDisposedException(nameof(KvmVm));

    /// <summary>KVM_CHECK_EXTENSION on the VM fd (answers that depend on the VM, e.g. address spaces).</summary>
    public int CheckExtension(KvmCap capability)
    {
        int result = NativeIoctl.Invoke(Fd, KvmIoctls.KVM_CHECK_EXTENSION, (nint)capability);
        return result < 0 ? 0 : result;
    }

    /// <summary>KVM_SET_USER_MEMORY_REGION; returns 0 or -errno so callers can surface the kernel's verdict.</summary>
    public int TrySetUserMemoryRegion(in kvm_userspace_memory_region region)
    {
        fixed (kvm_userspace_memory_region* p = &region)
        {
            return NativeIoctl.Invoke(Fd, KvmIoctls.KVM_SET_USER_MEMORY_REGION, p);
        }
    }

    /// <summary>KVM_GET_DIRTY_LOG; 0 or -errno (ENOENT: no such slot, or it does not log), for callers probing the kernel's state.</summary>
    public int TryGetDirtyLog(uint slot, Span<ulong> bitmap)
    {
        fixed (ulong* bits = bitmap)
        {
            var log = new kvm_dirty_log { slot = slot, dirty_bitmap = (ulong)bits };
            return NativeIoctl.Invoke(Fd, KvmIoctls.KVM_GET_DIRTY_LOG, &log);
        }
    }

    /// <summary>KVM_GET_DIRTY_LOG into <paramref name="bitmap"/> (one bit per page of the slot, rounded to 64).</summary>
    public void GetDirtyLog(uint slot, Span<ulong> bitmap)
    {
        fixed (ulong* bits = bitmap)
        {
            var log = new kvm_dirty_log { slot = slot, dirty_bitmap = (ulong)bits };
            NativeIoctl.Checked(Fd, KvmIoctls.KVM_GET_DIRTY_LOG, &log);
        }
    }

    public KvmVcpu CreateVcpu(int id)
    {
        int fd = NativeIoctl.Checked(Fd, KvmIoctls.KVM_CREATE_VCPU, id);
        try
        {
            return new KvmVcpu(this, id, fd, System.VcpuMmapSize);
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
