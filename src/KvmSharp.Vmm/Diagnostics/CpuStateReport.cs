using System.Text;
using Iced.Intel;
using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Memory;

namespace KvmSharp.Vmm.Diagnostics;

/// <summary>A readable dump of a vCPU: general and special registers, and the disassembly at RIP (Iced).</summary>
public static class CpuStateReport
{
    public static string Capture(KvmVcpu vcpu, GuestPhysicalMemory memory, string reason)
    {
        var text = new StringBuilder();
        text.AppendLine($"vCPU {vcpu.Id}: {reason}");
        kvm_regs regs;
        kvm_sregs sregs;
        try
        {
            regs = vcpu.GetRegisters();
            sregs = vcpu.GetSpecialRegisters();
        }
        catch (KvmException e)
        {
            text.AppendLine($"  registers unavailable: {e.Message}");
            return text.ToString();
        }
        text.Append(FormatRegisters(regs, sregs));
        text.Append(Disassemble(memory, regs, sregs));
        return text.ToString();
    }

    public static string FormatRegisters(in kvm_regs r, in kvm_sregs s)
    {
        var text = new StringBuilder();
        text.AppendLine($"  rip={r.rip:x16} rflags={r.rflags:x16}");
        text.AppendLine($"  rax={r.rax:x16} rbx={r.rbx:x16} rcx={r.rcx:x16} rdx={r.rdx:x16}");
        text.AppendLine($"  rsi={r.rsi:x16} rdi={r.rdi:x16} rsp={r.rsp:x16} rbp={r.rbp:x16}");
        text.AppendLine($"  r8 ={r.r8:x16} r9 ={r.r9:x16} r10={r.r10:x16} r11={r.r11:x16}");
        text.AppendLine($"  r12={r.r12:x16} r13={r.r13:x16} r14={r.r14:x16} r15={r.r15:x16}");
        text.AppendLine($"  cs={s.cs.selector:x4} base={s.cs.@base:x} l={s.cs.l} db={s.cs.db} dpl={s.cs.dpl}  ss={s.ss.selector:x4}");
        text.AppendLine($"  cr0={s.cr0:x} cr2={s.cr2:x} cr3={s.cr3:x} cr4={s.cr4:x} efer={s.efer:x}");
        text.AppendLine($"  gdt={s.gdt.@base:x}/{s.gdt.limit:x} idt={s.idt.@base:x}/{s.idt.limit:x}");
        return text.ToString();
    }

    private static string Disassemble(GuestPhysicalMemory memory, in kvm_regs regs, in kvm_sregs sregs)
    {
        int bitness = sregs.cs.l != 0 && (sregs.efer & X86.EFER_LMA) != 0 ? 64 : sregs.cs.db != 0 ? 32 : 16;
        ulong linear = bitness == 64 ? regs.rip : sregs.cs.@base + regs.rip;
        if (!TryTranslate(memory, sregs, linear, out ulong physical))
            return $"  code at rip: linear 0x{linear:x} is not mapped by the guest page tables\n";
        var bytes = new byte[48];
        int length = bytes.Length;
        while (length > 0 && !memory.TryRead(physical, bytes.AsSpan(0, length))) length -= 16;
        if (length <= 0) return $"  code at rip: guest physical 0x{physical:x} is not backed by memory\n";

        var text = new StringBuilder($"  code at rip (gpa 0x{physical:x}, {bitness}-bit):\n");
        var decoder = Iced.Intel.Decoder.Create(bitness, new ByteArrayCodeReader(bytes, 0, length), regs.rip);
        var formatter = new NasmFormatter();
        var output = new StringOutput();
        for (int i = 0; i < 6 && decoder.IP < regs.rip + (ulong)length; i++)
        {
            decoder.Decode(out var instruction);
            if (instruction.IsInvalid && i > 0) break;
            formatter.Format(instruction, output);
            text.AppendLine($"  {(i == 0 ? "=>" : "  ")} {instruction.IP:x16}  {output.ToStringAndReset()}");
        }
        return text.ToString();
    }

    /// <summary>Walk the guest's 4-level page tables (or none, with paging off).</summary>
    public static bool TryTranslate(GuestPhysicalMemory memory, in kvm_sregs sregs, ulong linear, out ulong physical)
    {
        physical = linear;
        if ((sregs.cr0 & X86.CR0_PG) == 0) return true;
        if ((sregs.efer & X86.EFER_LMA) == 0) return false; // 32-bit paging: not needed by KvmSharp's guests
        const ulong AddressMask = 0x000F_FFFF_FFFF_F000;
        ulong table = sregs.cr3 & AddressMask;
        for (int level = 3; level >= 0; level--)
        {
            ulong index = (linear >> (12 + 9 * level)) & 0x1FF;
            var entryBytes = new byte[8];
            if (!memory.TryRead(table + index * 8, entryBytes)) return false;
            ulong entry = BitConverter.ToUInt64(entryBytes);
            if ((entry & X86.PTE_PRESENT) == 0) return false;
            if (level is 1 or 2 && (entry & X86.PTE_LARGE) != 0)
            {
                ulong pageMask = (1UL << (12 + 9 * level)) - 1;
                physical = (entry & AddressMask & ~pageMask) | (linear & pageMask);
                return true;
            }
            table = entry & AddressMask;
        }
        physical = table | (linear & 0xFFF);
        return true;
    }
}
