using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Vmm.Boot;

/// <summary>Starts a vCPU in 16-bit real mode at CS:IP = 0:entry (the benchmark's common ground with C).</summary>
public static class RealModeSetup
{
    public static void Enter(KvmVcpu vcpu, ulong entry)
    {
        if (entry > 0xFFFF) throw new ArgumentOutOfRangeException(nameof(entry), $"real-mode entry 0x{entry:x} must be below 0x10000");
        var sregs = vcpu.GetSpecialRegisters();
        sregs.cs.@base = 0;
        sregs.cs.selector = 0;
        vcpu.SetSpecialRegisters(sregs);
        vcpu.SetRegisters(new kvm_regs { rip = entry, rsp = 0xFFF0, rflags = X86.RFLAGS_RESERVED });
    }
}
