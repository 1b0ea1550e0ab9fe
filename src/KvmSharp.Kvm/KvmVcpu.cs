using System.Runtime.InteropServices;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Kvm;

/// <summary>Owns a vCPU fd and its mmap'd kvm_run page.</summary>
public sealed unsafe class KvmVcpu : IDisposable
{
    private int _fd;
    private nint _run;
    private readonly int _runSize;

    internal KvmVcpu(KvmVm vm, int id, int fd, int runSize, int dirtyRingBytes)
    {
        Vm = vm;
        Id = id;
        _fd = fd;
        _runSize = runSize;
        _run = Posix.MapShared(fd, (ulong)runSize, writable: true, what: "mmap(kvm_run)");
        if (dirtyRingBytes > 0)
        {
            try
            {
                DirtyRing = KvmDirtyRing.Map(fd, id, dirtyRingBytes);
            }
            catch
            {
                Posix.Unmap(Interlocked.Exchange(ref _run, 0), (ulong)runSize);
                throw;
            }
        }
    }

    /// <summary>This vCPU's dirty ring, when the VM enabled one before creating it.</summary>
    public KvmDirtyRing? DirtyRing { get; }

    public KvmVm Vm { get; }
    public int Id { get; }
    internal int Fd => _fd >= 0 ? _fd : throw new ObjectDisposedException(nameof(KvmVcpu));

    /// <summary>The shared kvm_run structure; valid until the vCPU is disposed.</summary>
    public kvm_run* Run => (kvm_run*)_run;

    /// <summary>Base address of the kvm_run mapping (IO data lives at data_offset from it).</summary>
    public nint RunBase => _run;

    /// <summary>KVM_RUN. Returns 0, or -errno (-EINTR when kicked). Allocation-free.</summary>
    public int RunOnce() => NativeIoctl.Invoke(_fd, KvmIoctls.KVM_RUN, 0);

    public kvm_regs GetRegisters()
    {
        kvm_regs regs;
        NativeIoctl.Checked(Fd, KvmIoctls.KVM_GET_REGS, &regs);
        return regs;
    }

    public void SetRegisters(in kvm_regs regs)
    {
        fixed (kvm_regs* p = &regs) NativeIoctl.Checked(Fd, KvmIoctls.KVM_SET_REGS, p);
    }

    public kvm_sregs GetSpecialRegisters()
    {
        kvm_sregs sregs;
        NativeIoctl.Checked(Fd, KvmIoctls.KVM_GET_SREGS, &sregs);
        return sregs;
    }

    public void SetSpecialRegisters(in kvm_sregs sregs)
    {
        fixed (kvm_sregs* p = &sregs) NativeIoctl.Checked(Fd, KvmIoctls.KVM_SET_SREGS, p);
    }

    /// <summary>KVM_TRANSLATE: the guest-physical address of a linear address in the vCPU's current paging mode. Allocation-free.</summary>
    public bool TryTranslate(ulong linear, out ulong physical, out bool writeable)
    {
        var translation = new kvm_translation { linear_address = linear };
        int result = NativeIoctl.Invoke(Fd, KvmIoctls.KVM_TRANSLATE, &translation);
        physical = translation.physical_address;
        writeable = translation.writeable != 0;
        return result >= 0 && translation.valid != 0;
    }

    /// <summary>KVM_GET_XSAVE into a caller's buffer (4 KiB, standard format). Allocation-free.</summary>
    public void GetXsave(kvm_xsave* area) => NativeIoctl.Checked(Fd, KvmIoctls.KVM_GET_XSAVE, area);

    /// <summary>KVM_SET_XSAVE from a caller's buffer.</summary>
    public void SetXsave(kvm_xsave* area) => NativeIoctl.Checked(Fd, KvmIoctls.KVM_SET_XSAVE, area);

    /// <summary>KVM_GET_LAPIC: the in-kernel local APIC's register page (needs KVM_CREATE_IRQCHIP).</summary>
    public kvm_lapic_state GetLapic()
    {
        kvm_lapic_state state;
        NativeIoctl.Checked(Fd, KvmIoctls.KVM_GET_LAPIC, &state);
        return state;
    }

    public void SetLapic(in kvm_lapic_state state)
    {
        fixed (kvm_lapic_state* p = &state) NativeIoctl.Checked(Fd, KvmIoctls.KVM_SET_LAPIC, p);
    }

    public kvm_fpu GetFpu()
    {
        kvm_fpu fpu;
        NativeIoctl.Checked(Fd, KvmIoctls.KVM_GET_FPU, &fpu);
        return fpu;
    }

    public void SetFpu(in kvm_fpu fpu)
    {
        fixed (kvm_fpu* p = &fpu) NativeIoctl.Checked(Fd, KvmIoctls.KVM_SET_FPU, p);
    }

    public void SetCpuid(ReadOnlySpan<kvm_cpuid_entry2> entries)
    {
        int bytes = sizeof(kvm_cpuid2) + entries.Length * sizeof(kvm_cpuid_entry2);
        byte* buffer = (byte*)NativeMemory.AllocZeroed((nuint)bytes);
        try
        {
            ((kvm_cpuid2*)buffer)->nent = (uint)entries.Length;
            entries.CopyTo(new Span<kvm_cpuid_entry2>(buffer + sizeof(kvm_cpuid2), entries.Length));
            NativeIoctl.Checked(Fd, KvmIoctls.KVM_SET_CPUID2, buffer);
        }
        finally
        {
            NativeMemory.Free(buffer);
        }
    }

    /// <summary>KVM_SET_MSRS; throws unless every entry was accepted (the kernel returns how many it took).</summary>
    public void SetMsrs(ReadOnlySpan<kvm_msr_entry> entries)
    {
        int accepted = TransferMsrs(KvmIoctls.KVM_SET_MSRS, entries, default);
        if (accepted != entries.Length)
            throw new KvmException("KVM_SET_MSRS", Errno.EINVAL,
                $"MSR 0x{entries[accepted].index:x} refused ({accepted} of {entries.Length} set)");
    }

    /// <summary>KVM_GET_MSRS for the indices in <paramref name="entries"/>; fills their data.</summary>
    public int GetMsrs(Span<kvm_msr_entry> entries) => TransferMsrs(KvmIoctls.KVM_GET_MSRS, entries, entries);

    private int TransferMsrs(uint request, ReadOnlySpan<kvm_msr_entry> input, Span<kvm_msr_entry> output)
    {
        int bytes = sizeof(kvm_msrs) + input.Length * sizeof(kvm_msr_entry);
        byte* buffer = (byte*)NativeMemory.AllocZeroed((nuint)bytes);
        try
        {
            ((kvm_msrs*)buffer)->nmsrs = (uint)input.Length;
            var entries = new Span<kvm_msr_entry>(buffer + sizeof(kvm_msrs), input.Length);
            input.CopyTo(entries);
            int count = NativeIoctl.Checked(Fd, request, buffer);
            if (!output.IsEmpty) entries.CopyTo(output);
            return count;
        }
        finally
        {
            NativeMemory.Free(buffer);
        }
    }

    /// <summary>KVM_SET_SIGNAL_MASK with a raw kernel sigset (8 bytes on x86-64); null removes the mask.</summary>
    public void SetSignalMask(ulong? kernelSigset)
    {
        byte* buffer = stackalloc byte[sizeof(kvm_signal_mask) + sizeof(ulong)];
        if (kernelSigset is null)
        {
            NativeIoctl.Checked(Fd, KvmIoctls.KVM_SET_SIGNAL_MASK, 0);
            return;
        }
        ((kvm_signal_mask*)buffer)->len = sizeof(ulong);
        *(ulong*)(buffer + sizeof(kvm_signal_mask)) = kernelSigset.Value;
        NativeIoctl.Checked(Fd, KvmIoctls.KVM_SET_SIGNAL_MASK, buffer);
    }

    /// <summary>
    /// KVM_KVMCLOCK_CTRL: tell the guest (through its kvmclock page) that the VMM stopped it, so its
    /// soft-lockup watchdog does not blame the pause on itself. Returns 0 or -errno; -EINVAL means the
    /// guest has not enabled kvmclock, which is normal for guests without it. Call it while the vCPU is
    /// not in KVM_RUN.
    /// </summary>
    public int KvmclockCtrl() => NativeIoctl.Invoke(Fd, KvmIoctls.KVM_KVMCLOCK_CTRL, 0);

    public void Dispose()
    {
        DirtyRing?.Dispose();
        nint run = Interlocked.Exchange(ref _run, 0);
        Posix.Unmap(run, (ulong)_runSize);
        Posix.Close(Interlocked.Exchange(ref _fd, -1));
    }
}
