using System.Text;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Multiboot;

/// <summary>
/// A multiboot test kernel written as a test kernel for QEMU would be, assembled with Iced: 32-bit code at
/// <see cref="CodeAddress"/> that checks eax and the multiboot info (flags, mem_lower/mem_upper, boot loader
/// name, cmdline, the mmap entry of RAM above 1 MiB, the module's bytes and string), reads fw_cfg (signature,
/// id, vCPU count, RAM size, an empty file directory), starts the APs with INIT/SIPI through the LAPIC (each
/// AP runs a real-mode trampoline that the kernel copied to <see cref="TrampolineAddress"/> and that increments a
/// counter; QEMU's loader takes a kernel as one block from its lowest to its highest segment, so the kernel
/// keeps every segment above 1 MiB, as kvm-unit-tests does), then writes
/// 0xC0DE0000 | APs started &lt;&lt; 8 | failed checks (<see cref="Failure"/> bits) as a dword to the QEMU debug-exit
/// port. A few hundred CPL0 instructions plus the waits (PVM emulates them at about a million per second).
/// </summary>
internal static class MultibootTestKernel
{
    public const uint CodeAddress = 0x100000, DataAddress = 0x110000, TrampolineAddress = 0x8000, CounterAddress = 0x8F00, StackTop = 0x9F000;
    public const ushort DebugExitPort = 0xf4;
    public const uint ValueBase = 0xC0DE0000;
    private const uint ExpectedCmdline = DataAddress, ExpectedLoaderName = DataAddress + 0x400, ExpectedModuleString = DataAddress + 0x500, TrampolineCopy = DataAddress + 0x600, ExpectedModuleBytes = DataAddress + 0x800;
    private const uint LapicIcrLow = 0xFEE00300, LapicIcrHigh = 0xFEE00310;

    [Flags]
    public enum Failure : uint
    {
        None = 0,
        Magic = 1 << 0,
        InfoBasics = 1 << 1,
        Cmdline = 1 << 2,
        MemoryMap = 1 << 3,
        Module = 1 << 4,
        FwCfg = 1 << 5,
        Aps = 1 << 6,
    }

    /// <summary>The --cmdline the kernel expects after its own path.</summary>
    public const string Arguments = "first=1 second";

    /// <summary>The kernel file and the --initrd item (module file and its argument) for `kvmsharp run`.</summary>
    public sealed record Files(string Kernel, string ModuleItem);

    /// <summary>Write the kernel and a 3000-byte module into <paramref name="directory"/>, the kernel expecting them and <see cref="Arguments"/>.</summary>
    public static Files Write(string directory, ulong memoryBytes, int cpus)
    {
        var module = new byte[3000];
        new Random(11).NextBytes(module);
        string modulePath = Path.Combine(directory, "module.bin");
        File.WriteAllBytes(modulePath, module);
        string kernelPath = Path.Combine(directory, "kernel.elf");
        string moduleItem = $"{modulePath} mod-arg";
        File.WriteAllBytes(kernelPath, Build($"{kernelPath} {Arguments}", moduleItem, module, memoryBytes, cpus));
        return new Files(kernelPath, moduleItem);
    }

    /// <summary>The ELF file: code, and data (what the guest expects to see, and the AP trampoline to copy), each a PT_LOAD segment.</summary>
    public static byte[] Build(string cmdline, string moduleString, byte[] module, ulong memoryBytes, int cpus)
    {
        var data = new byte[0x800 + module.Length];
        Encoding.ASCII.GetBytes(cmdline + "\0").CopyTo(data, 0);
        Encoding.ASCII.GetBytes("KvmSharp\0").CopyTo(data, 0x400);
        Encoding.ASCII.GetBytes(moduleString + "\0").CopyTo(data, 0x500);
        byte[] trampoline = Assemble(16, TrampolineAddress, EmitAp);
        trampoline.CopyTo(data, 0x600);
        module.CopyTo(data, 0x800);
        byte[] code = Assemble(32, CodeAddress, a => EmitBsp(a, module.Length, memoryBytes, cpus, trampoline.Length));
        return MultibootElf.Build(CodeAddress,
        [
            new(CodeAddress, code, (uint)code.Length),
            new(DataAddress, data, (uint)data.Length),
        ]);
    }

    /// <summary>The value the kernel writes when every check passed with <paramref name="cpus"/> vCPUs.</summary>
    public static uint PassingValue(int cpus) => ValueBase | ((uint)(cpus - 1) << 8);

    private static byte[] Assemble(int bitness, ulong address, Action<Assembler> emit)
    {
        var a = new Assembler(bitness);
        emit(a);
        var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), address);
        return stream.ToArray();
    }

    // ebp accumulates Failure bits; ebx stays the info pointer until the fw_cfg checks.
    private static void EmitBsp(Assembler a, int moduleLength, ulong memoryBytes, int cpus, int trampolineLength)
    {
        var streq = a.CreateLabel();
        a.mov(esp, StackTop);
        a.xor(ebp, ebp);
        Check(a, Failure.Magic, fail => { a.cmp(eax, unchecked((int)0x2BADB002)); a.jne(fail); });

        uint upperKiB = (uint)((Math.Min(memoryBytes, 3UL << 30) - 0x100000) >> 10);
        const int Flags = 0x1 | 0x4 | 0x8 | 0x40 | 0x200; // memory, cmdline, mods, mmap, boot_loader_name
        Check(a, Failure.InfoBasics, fail =>
        {
            a.mov(eax, __dword_ptr[ebx]);
            a.and(eax, Flags);
            a.cmp(eax, Flags);
            a.jne(fail);
            a.cmp(__dword_ptr[ebx + 4], 640);
            a.jne(fail);
            a.cmp(__dword_ptr[ebx + 8], (int)upperKiB);
            a.jne(fail);
            a.mov(esi, __dword_ptr[ebx + 64]);
            a.mov(edx, ExpectedLoaderName);
            a.call(streq);
            a.jne(fail);
        });
        Check(a, Failure.Cmdline, fail =>
        {
            a.mov(esi, __dword_ptr[ebx + 16]);
            a.mov(edx, ExpectedCmdline);
            a.call(streq);
            a.jne(fail);
        });
        Check(a, Failure.MemoryMap, fail =>
        {
            // Some entry is RAM (type 1) from 1 MiB to the end of guest memory.
            var walk = a.CreateLabel();
            var next = a.CreateLabel();
            var found = a.CreateLabel();
            a.mov(esi, __dword_ptr[ebx + 48]);
            a.mov(ecx, __dword_ptr[ebx + 44]);
            a.add(ecx, esi);
            a.Label(ref walk);
            a.cmp(esi, ecx);
            a.jae(fail);
            a.cmp(__dword_ptr[esi + 4], 0x100000);
            a.jne(next);
            a.cmp(__dword_ptr[esi + 8], 0);
            a.jne(next);
            a.cmp(__dword_ptr[esi + 12], (int)(Math.Min(memoryBytes, 3UL << 30) - 0x100000));
            a.jne(next);
            a.cmp(__dword_ptr[esi + 16], 0);
            a.jne(next);
            a.cmp(__dword_ptr[esi + 20], 1);
            a.je(found);
            a.Label(ref next);
            a.add(esi, __dword_ptr[esi]);
            a.add(esi, 4);
            a.jmp(walk);
            a.Label(ref found);
        });
        Check(a, Failure.Module, fail =>
        {
            a.cmp(__dword_ptr[ebx + 20], 1);
            a.jne(fail);
            a.mov(eax, __dword_ptr[ebx + 24]);
            a.mov(esi, __dword_ptr[eax]);
            a.mov(ecx, __dword_ptr[eax + 4]);
            a.sub(ecx, esi);
            a.cmp(ecx, moduleLength);
            a.jne(fail);
            a.test(esi, 0xFFF);
            a.jne(fail);
            a.mov(edi, ExpectedModuleBytes);
            a.cld();
            a.repe.cmpsb();
            a.jne(fail);
            a.mov(eax, __dword_ptr[ebx + 24]);
            a.mov(esi, __dword_ptr[eax + 8]);
            a.mov(edx, ExpectedModuleString);
            a.call(streq);
            a.jne(fail);
        });
        Check(a, Failure.FwCfg, fail =>
        {
            FwCfgExpect(a, fail, 0x00, "QEMU"u8.ToArray());
            FwCfgExpect(a, fail, 0x01, BitConverter.GetBytes(1u));
            FwCfgExpect(a, fail, 0x05, BitConverter.GetBytes((ushort)cpus));
            FwCfgExpect(a, fail, 0x03, BitConverter.GetBytes(memoryBytes));
            FwCfgExpect(a, fail, 0x19, new byte[4]); // FW_CFG_FILE_DIR: zero files (big-endian count)
        });

        // The trampoline goes below 1 MiB, where SIPI can start it; its counter starts at 0.
        a.mov(esi, TrampolineCopy);
        a.mov(edi, TrampolineAddress);
        a.mov(ecx, trampolineLength);
        a.cld();
        a.rep.movsb();
        a.mov(__dword_ptr[CounterAddress], 0);

        // INIT, then SIPI twice (the second is dropped by an AP already running), to all but self.
        a.mov(__dword_ptr[LapicIcrHigh], 0);
        a.mov(__dword_ptr[LapicIcrLow], 0x000C4500);
        Delay(a, 200);
        a.mov(__dword_ptr[LapicIcrLow], 0x000C4600 | (int)(TrampolineAddress >> 12));
        Delay(a, 200);
        a.mov(__dword_ptr[LapicIcrLow], 0x000C4600 | (int)(TrampolineAddress >> 12));
        var poll = a.CreateLabel();
        var counted = a.CreateLabel();
        a.mov(ecx, 3_000_000);
        a.Label(ref poll);
        a.cmp(__dword_ptr[CounterAddress], cpus - 1);
        a.je(counted);
        a.pause();
        a.dec(ecx);
        a.jne(poll);
        a.Label(ref counted);
        Check(a, Failure.Aps, fail => { a.mov(eax, __dword_ptr[CounterAddress]); a.cmp(eax, cpus - 1); a.jne(fail); });

        var halt = a.CreateLabel();
        a.mov(eax, __dword_ptr[CounterAddress]);
        a.shl(eax, 8);
        a.or(eax, ebp);
        a.or(eax, unchecked((int)ValueBase));
        a.mov(dx, DebugExitPort);
        a.@out(dx, eax);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);

        // streq: ZF set when the NUL-terminated strings at esi and edx are equal.
        var done = a.CreateLabel();
        a.Label(ref streq);
        a.mov(al, __byte_ptr[esi]);
        a.cmp(al, __byte_ptr[edx]);
        a.jne(done);
        a.test(al, al);
        a.je(done);
        a.inc(esi);
        a.inc(edx);
        a.jmp(streq);
        a.Label(ref done);
        a.ret();
    }

    // Runs the check; a jump to its fail label sets the failure bit.
    private static void Check(Assembler a, Failure failure, Action<Label> emit)
    {
        var fail = a.CreateLabel();
        var next = a.CreateLabel();
        emit(fail);
        a.jmp(next);
        a.Label(ref fail);
        a.or(ebp, (int)failure);
        a.Label(ref next);
    }

    private static void FwCfgExpect(Assembler a, Label fail, ushort key, byte[] expected)
    {
        a.mov(dx, 0x510);
        a.mov(ax, key);
        a.@out(dx, ax);
        a.mov(dx, 0x511);
        foreach (byte b in expected)
        {
            a.@in(al, dx);
            a.cmp(al, b);
            a.jne(fail);
        }
    }

    private static void Delay(Assembler a, int iterations)
    {
        var spin = a.CreateLabel();
        a.mov(ecx, iterations);
        a.Label(ref spin);
        a.pause();
        a.dec(ecx);
        a.jne(spin);
    }

    // Real mode at CS = TrampolineAddress >> 4, IP = 0: count this AP in, then halt for good.
    private static void EmitAp(Assembler a)
    {
        var halt = a.CreateLabel();
        a.cli();
        a.xor(ax, ax);
        a.mov(ds, ax);
        a.@lock.inc(__dword_ptr[CounterAddress]);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);
    }
}
