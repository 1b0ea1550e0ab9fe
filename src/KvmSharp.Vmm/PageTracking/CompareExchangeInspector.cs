using Iced.Intel;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Vmm.Diagnostics;
using KvmSharp.Vmm.Memory;
using KvmSharp.Vmm.Vcpus;

namespace KvmSharp.Vmm.PageTracking;

/// <summary>
/// Tells a failed cmpxchg from a real write of unchanged bytes. KVM's emulator completes the
/// instruction before the MMIO exit (RIP is past it, flags are final), and a failed cmpxchg writes
/// the old value back with ZF clear. So: ZF clear, and a cmpxchg with a memory operand ends at RIP.
/// Only consulted for writes whose bytes equal memory, so the register reads stay off the common path.
/// </summary>
public sealed class CompareExchangeInspector(GuestPhysicalMemory memory) : ITrappedWriteInspector
{
    private const ulong ZeroFlag = 1UL << 6;

    public bool IsFailedCompareExchange(int vcpuId)
    {
        var vcpu = VcpuRunner.Current?.Vcpu;
        if (vcpu is null || vcpu.Id != vcpuId) return false;
        var regs = vcpu.GetRegisters();
        if ((regs.rflags & ZeroFlag) != 0) return false;
        var sregs = vcpu.GetSpecialRegisters();
        int bitness = sregs.cs.l != 0 ? 64 : sregs.cs.db != 0 ? 32 : 16;
        ulong linear = (bitness == 64 ? 0 : sregs.cs.@base) + regs.rip;
        var bytes = new byte[15];
        for (int length = 15; length >= 2; length--)
        {
            ulong start = linear - (ulong)length;
            if (!CpuStateReport.TryTranslate(memory, sregs, start, out ulong physical)) continue;
            if (!memory.TryRead(physical, bytes.AsSpan(0, length))) continue;
            var decoder = Iced.Intel.Decoder.Create(bitness, new ByteArrayCodeReader(bytes, 0, length), start);
            decoder.Decode(out var instruction);
            if (instruction.Length == length &&
                instruction.Mnemonic is Mnemonic.Cmpxchg or Mnemonic.Cmpxchg8b or Mnemonic.Cmpxchg16b &&
                instruction.Op0Kind == OpKind.Memory)
                return true;
        }
        return false;
    }
}
