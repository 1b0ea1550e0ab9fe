using System.Numerics;
using System.Text;
using Iced.Intel;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Machine;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Vmm.Guests;

/// <summary>
/// The guest `kvmsharp run` boots when given nothing else, assembled with Iced at start-up (no blob).
/// Entered in 64-bit long mode, vCPU 0 prints a banner and a self-report over the UART (the RAM size
/// it was given, that EFER.LMA is set, a checksum of a pattern it wrote and read back), then writes
/// status 0 to the debug-exit port. Other vCPUs halt.
/// </summary>
public static class BuiltInGuest
{
    public const ulong LoadAddress = 0x100000;
    public const ulong PatternAddress = 0x180000;
    public const int PatternQwords = 4096;
    public const ulong PatternBytes = PatternQwords * 8;
    public const ulong MinimumMemory = 2UL << 20;
    public const string Banner = "KvmSharp built-in guest: hello from 64-bit long mode";

    private const ulong Seed = 0x9E3779B97F4A7C15;
    private const ulong LcgMultiplier = 6364136223846793005;
    private const ulong LcgIncrement = 1442695040888963407;
    private const uint EferMsr = 0xC0000080;

    /// <summary>The checksum the guest must report: c = rol(c, 5) ^ v over the LCG sequence it writes.</summary>
    public static ulong ExpectedChecksum()
    {
        ulong value = Seed, checksum = 0;
        for (int i = 0; i < PatternQwords; i++)
        {
            checksum = BitOperations.RotateLeft(checksum, 5) ^ value;
            value = value * LcgMultiplier + LcgIncrement;
        }
        return checksum;
    }

    public static GuestImage Create(ushort serialPort = 0x3F8, ushort debugExitPort = 0x501)
    {
        var a = new Assembler(64);
        var park = a.CreateLabel();
        var puts = a.CreateLabel();
        var putHex = a.CreateLabel();
        var putDec = a.CreateLabel();
        var banner = a.CreateLabel();
        var memoryLabel = a.CreateLabel();
        var mibLabel = a.CreateLabel();
        var modeLong = a.CreateLabel();
        var modeOther = a.CreateLabel();
        var patternLabel = a.CreateLabel();
        var byeLabel = a.CreateLabel();
        var writeLoop = a.CreateLabel();
        var readLoop = a.CreateLabel();
        var modeDone = a.CreateLabel();
        var notLongMode = a.CreateLabel();

        // rdi = RAM bytes, rsi = vCPU id, rdx = vCPU count (the flat-image entry contract).
        a.mov(r15, rdi);
        a.test(rsi, rsi);
        a.jnz(park);

        a.lea(rsi, __[banner]);
        a.call(puts);
        a.lea(rsi, __[memoryLabel]);
        a.call(puts);
        a.mov(rax, r15);
        a.shr(rax, 20);
        a.call(putDec);
        a.lea(rsi, __[mibLabel]);
        a.call(puts);

        // Read EFER to prove long mode is active (LMA, bit 10).
        a.mov(ecx, EferMsr);
        a.rdmsr();
        a.bt(eax, 10);
        a.jnc(notLongMode);
        a.lea(rsi, __[modeLong]);
        a.jmp(modeDone);
        a.Label(ref notLongMode);
        a.lea(rsi, __[modeOther]);
        a.Label(ref modeDone);
        a.call(puts);

        // Write the LCG pattern, then read it back into a rotate-xor checksum.
        a.mov(rdi, PatternAddress);
        a.mov(ecx, PatternQwords);
        a.mov(rax, Seed);
        a.mov(r8, LcgMultiplier);
        a.mov(r9, LcgIncrement);
        a.Label(ref writeLoop);
        a.mov(__qword_ptr[rdi], rax);
        a.imul(rax, r8);
        a.add(rax, r9);
        a.add(rdi, 8);
        a.dec(ecx);
        a.jnz(writeLoop);

        a.mov(rdi, PatternAddress);
        a.mov(ecx, PatternQwords);
        a.xor(r12, r12);
        a.Label(ref readLoop);
        a.rol(r12, 5);
        a.xor(r12, __qword_ptr[rdi]);
        a.add(rdi, 8);
        a.dec(ecx);
        a.jnz(readLoop);

        a.lea(rsi, __[patternLabel]);
        a.call(puts);
        a.mov(rax, r12);
        a.call(putHex);
        a.lea(rsi, __[byeLabel]);
        a.call(puts);

        a.mov(dx, debugExitPort);
        a.xor(eax, eax);
        a.@out(dx, al);
        a.Label(ref park);
        a.cli();
        a.hlt();
        a.jmp(park);

        // puts: rsi = NUL-terminated string; waits for LSR.THRE before each byte, as a real driver does.
        var putsWait = a.CreateLabel();
        var putsDone = a.CreateLabel();
        a.Label(ref puts);
        a.lodsb();
        a.test(al, al);
        a.jz(putsDone);
        a.mov(r10b, al);
        a.Label(ref putsWait);
        a.mov(dx, (ushort)(serialPort + 5));
        a.@in(al, dx);
        a.test(al, 0x20);
        a.jz(putsWait);
        a.mov(dx, serialPort);
        a.mov(al, r10b);
        a.@out(dx, al);
        a.jmp(puts);
        a.Label(ref putsDone);
        a.ret();

        // putHex: rax as 16 hex digits, built on the stack then printed with puts.
        var hexLoop = a.CreateLabel();
        var hexDigit = a.CreateLabel();
        a.Label(ref putHex);
        a.sub(rsp, 32);
        a.mov(__byte_ptr[rsp + 16], 0);
        a.mov(ecx, 16);
        a.Label(ref hexLoop);
        a.mov(r11, rax);
        a.and(r11d, 0xF);
        a.add(r11d, '0');
        a.cmp(r11d, '9');
        a.jbe(hexDigit);
        a.add(r11d, 'a' - '9' - 1);
        a.Label(ref hexDigit);
        a.mov(__byte_ptr[rsp + rcx - 1], r11b);
        a.shr(rax, 4);
        a.dec(ecx);
        a.jnz(hexLoop);
        a.mov(rsi, rsp);
        a.call(puts);
        a.add(rsp, 32);
        a.ret();

        // putDec: rax as unsigned decimal.
        var decLoop = a.CreateLabel();
        a.Label(ref putDec);
        a.sub(rsp, 32);
        a.lea(rsi, __[rsp + 31]);
        a.mov(__byte_ptr[rsi], 0);
        a.mov(r11, 10);
        a.Label(ref decLoop);
        a.xor(edx, edx);
        a.div(r11);
        a.add(dl, (byte)'0');
        a.dec(rsi);
        a.mov(__byte_ptr[rsi], dl);
        a.test(rax, rax);
        a.jnz(decLoop);
        a.call(puts);
        a.add(rsp, 32);
        a.ret();

        DefineString(a, ref banner, Banner + "\n");
        DefineString(a, ref memoryLabel, "memory: ");
        DefineString(a, ref mibLabel, " MiB\n");
        DefineString(a, ref modeLong, "cpu mode: 64-bit long mode (EFER.LMA=1)\n");
        DefineString(a, ref modeOther, "cpu mode: not long mode (EFER.LMA=0)\n");
        DefineString(a, ref patternLabel, $"pattern: wrote and read back {PatternBytes} bytes at 0x{PatternAddress:x}, checksum 0x");
        DefineString(a, ref byeLabel, "\nself-test done, exiting with status 0\n");

        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), LoadAddress);
        return new GuestImage(stream.ToArray(), LoadAddress, LoadAddress, CpuMode.Long, "built-in");
    }

    private static void DefineString(Assembler a, ref Label label, string text)
    {
        a.Label(ref label);
        a.db(Encoding.ASCII.GetBytes(text + "\0"));
    }
}
