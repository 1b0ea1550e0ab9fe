using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Vmm.Boot;

/// <summary>
/// Puts a vCPU in flat 32-bit protected mode with paging off, as the PVH boot ABI asks: 4 GiB code
/// and data segments, a busy 32-bit TSS, CR0 = PE|ET, ebx = the start-info address.
/// </summary>
public static class ProtectedModeSetup
{
    public static void Enter(KvmVcpu vcpu, ulong entry, ulong ebx)
    {
        var sregs = vcpu.GetSpecialRegisters();
        var code = new kvm_segment { @base = 0, limit = 0xFFFFFFFF, selector = LongModeSetup.Code32Selector, type = 11, present = 1, dpl = 0, db = 1, s = 1, l = 0, g = 1 };
        var data = new kvm_segment { @base = 0, limit = 0xFFFFFFFF, selector = LongModeSetup.DataSelector, type = 3, present = 1, dpl = 0, db = 1, s = 1, l = 0, g = 1 };
        sregs.cs = code;
        sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
        sregs.tr = new kvm_segment { @base = 0, limit = 0x67, selector = LongModeSetup.TssSelector, type = 11, present = 1, s = 0 };
        sregs.gdt = new kvm_dtable { @base = LongModeSetup.GdtAddress, limit = LongModeSetup.GdtLimit };
        sregs.idt = new kvm_dtable { @base = 0, limit = 0 };
        sregs.cr0 = X86.CR0_PE | X86.CR0_ET;
        sregs.cr3 = 0;
        sregs.cr4 = 0;
        sregs.efer = 0;
        vcpu.SetSpecialRegisters(sregs);
        vcpu.SetRegisters(new kvm_regs { rip = entry, rbx = ebx, rflags = X86.RFLAGS_RESERVED });
    }
}
