using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Vmm.Boot;

/// <summary>
/// The per-vCPU state Linux expects beyond CPUID: boot MSRs (write-back MTRR default, fast strings),
/// a sane FPU, and with the in-kernel LAPIC its LINT0 as ExtINT (the PIC) and LINT1 as NMI.
/// </summary>
public static class LinuxVcpuSetup
{
    private const uint MsrIa32Tsc = 0x10, MsrIa32MiscEnable = 0x1A0, MsrMtrrDefType = 0x2FF;
    private const uint MsrSysenterCs = 0x174, MsrSysenterEsp = 0x175, MsrSysenterEip = 0x176;
    private const uint MsrStar = 0xC0000081, MsrLstar = 0xC0000082, MsrCstar = 0xC0000083, MsrSyscallMask = 0xC0000084, MsrKernelGsBase = 0xC0000102;
    private const ulong MiscEnableFastString = 1, MtrrEnableWriteBack = (1UL << 11) | 6;
    private const int LvtLint0 = 0x350, LvtLint1 = 0x360;
    private const uint DeliveryModeMask = 0x700, DeliveryExtInt = 0x700, DeliveryNmi = 0x400;

    /// <summary>Set the boot MSRs; returns the ones this KVM refused (not fatal: Linux copes).</summary>
    public static IReadOnlyList<uint> SetBootMsrs(KvmVcpu vcpu)
    {
        var wanted = new (uint Index, ulong Value)[]
        {
            (MsrSysenterCs, 0), (MsrSysenterEsp, 0), (MsrSysenterEip, 0),
            (MsrStar, 0), (MsrCstar, 0), (MsrKernelGsBase, 0), (MsrSyscallMask, 0), (MsrLstar, 0),
            (MsrIa32Tsc, 0), (MsrIa32MiscEnable, MiscEnableFastString), (MsrMtrrDefType, MtrrEnableWriteBack),
        };
        var refused = new List<uint>();
        foreach (var (index, value) in wanted)
        {
            try
            {
                vcpu.SetMsrs([new kvm_msr_entry { index = index, data = value }]);
            }
            catch (KvmException)
            {
                refused.Add(index);
            }
        }
        return refused;
    }

    public static void SetFpu(KvmVcpu vcpu)
    {
        var fpu = new kvm_fpu { fcw = 0x37F, mxcsr = 0x1F80 };
        vcpu.SetFpu(fpu);
    }

    public static unsafe void SetLapicLints(KvmVcpu vcpu)
    {
        var lapic = vcpu.GetLapic();
        uint* lint0 = (uint*)(lapic.regs + LvtLint0);
        uint* lint1 = (uint*)(lapic.regs + LvtLint1);
        *lint0 = (*lint0 & ~DeliveryModeMask) | DeliveryExtInt;
        *lint1 = (*lint1 & ~DeliveryModeMask) | DeliveryNmi;
        vcpu.SetLapic(lapic);
    }
}
