using Iced.Intel;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Vmm.PageTracking;

/// <summary>
/// One decoded read-modify-write of a memory operand (lock add/or/adc/sbb/and/sub/xor/inc/dec/not/neg,
/// xadd, xchg, cmpxchg, cmpxchg8b, bts/btr/btc), with its register and immediate operands read at the
/// instruction's start. <see cref="Apply"/> gives the value the instruction stores for a given old
/// value: KvmSharp stores it atomically, KVM's emulator computes flags and registers from the same old
/// value, so both agree.
/// </summary>
internal readonly record struct ReadModifyWrite(Mnemonic Mnemonic, int Width, ulong Source, ulong Compare, bool Carry)
{
    public static bool TryPrepare(in Instruction instruction, in kvm_regs regs, out ReadModifyWrite operation)
    {
        operation = default;
        if (instruction.IsInvalid) return false;
        int width = instruction.MemorySize.GetSize();
        if (width is not (1 or 2 or 4 or 8)) return false;
        bool carry = (regs.rflags & GuestRegisters.CarryFlag) != 0;
        ulong mask = GuestRegisters.Mask(width);
        switch (instruction.Mnemonic)
        {
            case Mnemonic.Add or Mnemonic.Or or Mnemonic.Adc or Mnemonic.Sbb or Mnemonic.And or Mnemonic.Sub or Mnemonic.Xor
                or Mnemonic.Xadd or Mnemonic.Bts or Mnemonic.Btr or Mnemonic.Btc:
                if (instruction.OpCount != 2 || instruction.Op0Kind != OpKind.Memory) return false;
                if (!TrySource(instruction, 1, regs, out ulong source)) return false;
                operation = new(instruction.Mnemonic, width, source & mask, 0, carry);
                return true;
            case Mnemonic.Inc or Mnemonic.Dec or Mnemonic.Not or Mnemonic.Neg:
                if (instruction.OpCount != 1 || instruction.Op0Kind != OpKind.Memory) return false;
                operation = new(instruction.Mnemonic, width, 0, 0, carry);
                return true;
            case Mnemonic.Xchg:
                int memory = instruction.Op0Kind == OpKind.Memory ? 0 : instruction.Op1Kind == OpKind.Memory ? 1 : -1;
                if (memory < 0 || !TrySource(instruction, 1 - memory, regs, out ulong exchanged)) return false;
                operation = new(Mnemonic.Xchg, width, exchanged & mask, 0, carry);
                return true;
            case Mnemonic.Cmpxchg:
                if (instruction.Op0Kind != OpKind.Memory || !TrySource(instruction, 1, regs, out ulong replacement)) return false;
                operation = new(Mnemonic.Cmpxchg, width, replacement & mask, regs.rax & mask, carry);
                return true;
            case Mnemonic.Cmpxchg8b when width == 8:
                operation = new(Mnemonic.Cmpxchg8b, 8, (regs.rcx << 32) | (uint)regs.rbx, (regs.rdx << 32) | (uint)regs.rax, carry);
                return true;
            default:
                return false;
        }
    }

    /// <summary>The value stored for <paramref name="old"/>, and whether the kernel would report it (all but a failed compare-exchange).</summary>
    public (ulong Value, bool Reported) Apply(ulong old)
    {
        ulong mask = GuestRegisters.Mask(Width);
        int bits = 8 * Width;
        ulong value = Mnemonic switch
        {
            Mnemonic.Add or Mnemonic.Xadd => old + Source,
            Mnemonic.Adc => old + Source + (Carry ? 1UL : 0),
            Mnemonic.Sub => old - Source,
            Mnemonic.Sbb => old - Source - (Carry ? 1UL : 0),
            Mnemonic.Or => old | Source,
            Mnemonic.And => old & Source,
            Mnemonic.Xor => old ^ Source,
            Mnemonic.Inc => old + 1,
            Mnemonic.Dec => old - 1,
            Mnemonic.Not => ~old,
            Mnemonic.Neg => 0 - old,
            Mnemonic.Bts => old | (1UL << (int)(Source % (ulong)bits)),
            Mnemonic.Btr => old & ~(1UL << (int)(Source % (ulong)bits)),
            Mnemonic.Btc => old ^ (1UL << (int)(Source % (ulong)bits)),
            Mnemonic.Xchg => Source,
            Mnemonic.Cmpxchg or Mnemonic.Cmpxchg8b => (old & mask) == Compare ? Source : old,
            _ => old,
        };
        bool reported = Mnemonic is not (Mnemonic.Cmpxchg or Mnemonic.Cmpxchg8b) || (old & mask) == Compare;
        return (value & mask, reported);
    }

    private static bool TrySource(in Instruction instruction, int operand, in kvm_regs regs, out ulong value)
    {
        value = 0;
        switch (instruction.GetOpKind(operand))
        {
            case OpKind.Register:
                value = GuestRegisters.Read(regs, instruction.GetOpRegister(operand));
                return true;
            case OpKind.Immediate8 or OpKind.Immediate16 or OpKind.Immediate32 or OpKind.Immediate64
                or OpKind.Immediate8to16 or OpKind.Immediate8to32 or OpKind.Immediate8to64 or OpKind.Immediate32to64:
                value = instruction.GetImmediate(operand);
                return true;
            default:
                return false;
        }
    }
}
