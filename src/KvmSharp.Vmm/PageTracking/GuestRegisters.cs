using Iced.Intel;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Vmm.PageTracking;

/// <summary>General-purpose registers of kvm_regs read and written under Iced's register names (any width, AH-BH too).</summary>
internal static class GuestRegisters
{
    public const ulong CarryFlag = 1UL << 0, ZeroFlag = 1UL << 6;

    public static ulong Read(in kvm_regs regs, Register register)
    {
        ulong full = Full(in regs, register.GetFullRegister());
        if (register is Register.AH or Register.CH or Register.DH or Register.BH) return (full >> 8) & 0xFF;
        return full & Mask(register.GetSize());
    }

    /// <summary>Write as the CPU does: 32-bit writes zero the upper half, 8- and 16-bit writes keep the rest.</summary>
    public static void Write(ref kvm_regs regs, Register register, ulong value)
    {
        var fullRegister = register.GetFullRegister();
        ref ulong full = ref Slot(ref regs, fullRegister);
        int size = register.GetSize();
        if (register is Register.AH or Register.CH or Register.DH or Register.BH) full = (full & ~0xFF00UL) | ((value & 0xFF) << 8);
        else if (size == 8) full = value;
        else if (size == 4) full = value & 0xFFFF_FFFF;
        else full = (full & ~Mask(size)) | (value & Mask(size));
    }

    public static ulong Mask(int bytes) => bytes >= 8 ? ulong.MaxValue : (1UL << (8 * bytes)) - 1;

    private static ulong Full(in kvm_regs regs, Register full) => full switch
    {
        Register.RAX => regs.rax, Register.RCX => regs.rcx, Register.RDX => regs.rdx, Register.RBX => regs.rbx,
        Register.RSP => regs.rsp, Register.RBP => regs.rbp, Register.RSI => regs.rsi, Register.RDI => regs.rdi,
        Register.R8 => regs.r8, Register.R9 => regs.r9, Register.R10 => regs.r10, Register.R11 => regs.r11,
        Register.R12 => regs.r12, Register.R13 => regs.r13, Register.R14 => regs.r14, Register.R15 => regs.r15,
        Register.RIP => regs.rip,
        _ => throw new ArgumentOutOfRangeException(nameof(full), full, "not a general-purpose register"),
    };

    private static ref ulong Slot(ref kvm_regs regs, Register full)
    {
        switch (full)
        {
            case Register.RAX: return ref regs.rax;
            case Register.RCX: return ref regs.rcx;
            case Register.RDX: return ref regs.rdx;
            case Register.RBX: return ref regs.rbx;
            case Register.RSP: return ref regs.rsp;
            case Register.RBP: return ref regs.rbp;
            case Register.RSI: return ref regs.rsi;
            case Register.RDI: return ref regs.rdi;
            case Register.R8: return ref regs.r8;
            case Register.R9: return ref regs.r9;
            case Register.R10: return ref regs.r10;
            case Register.R11: return ref regs.r11;
            case Register.R12: return ref regs.r12;
            case Register.R13: return ref regs.r13;
            case Register.R14: return ref regs.r14;
            case Register.R15: return ref regs.r15;
            default: throw new ArgumentOutOfRangeException(nameof(full), full, "not a general-purpose register");
        }
    }
}
