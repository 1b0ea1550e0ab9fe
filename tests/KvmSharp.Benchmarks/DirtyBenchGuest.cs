using Iced.Intel;
using KvmSharp.Tests.Integration.DirtyLog;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Memory;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Benchmarks;

/// <summary>
/// The dirty-logging guest, shared by kvmsharp-bench and scripts/bench/dirty_harvest.c: 64-bit code
/// loaded and entered at <see cref="LoadAddress"/> at CPL0 with the flat long-mode setup (rsi = vCPU
/// id), in a 4 GiB guest laid out as KvmSharp does (3 GiB at 0, 1 GiB at 4 GiB). It loads a GDT with
/// user segments and drops to CPL3 (guest CPL0 is emulated on a PVM host), then runs rounds: round r
/// writes one qword to each of <see cref="PagesPerRound"/> pages (1 % of the guest: page index
/// 512 + k * 100 + r mod 8, the first 2 MiB left alone; eight phases bound the host memory touched), stores r + 1 at <see cref="RoundCounter"/>,
/// and, unless <see cref="ContinuousFlag"/> is non-zero, writes to <see cref="SignalAddress"/> (no
/// memslot there: a KVM_EXIT_MMIO), where the host harvests before resuming it. So every harvest
/// after round 0 sees exactly <see cref="DirtyPagesPerRound"/> dirty pages.
/// </summary>
/// <remarks>Page tables: the host adds the U bit (and sets accessed/dirty, so the CPU never writes
/// them) to the identity map, and a fifth page directory at <see cref="HighPdAddress"/> for 4-5 GiB.</remarks>
public static class DirtyBenchGuest
{
    public const ulong LoadAddress = 0x100000;
    public const ulong MemoryBytes = 4UL << 30;
    public const ulong LowRamBytes = 3UL << 30;
    public const ulong HighRamBase = 4UL << 30;
    public const ulong SignalAddress = 0xD000_0000;
    public const ulong ContinuousFlag = 0x7000;
    public const ulong RoundCounter = 0x7008;
    public const int PagesPerRound = 10480;
    /// <summary>The pages written plus the round counter's page.</summary>
    public const int DirtyPagesPerRound = PagesPerRound + 1;
    public const ulong GdtPointer = UserModeEntry.GdtPointer;
    public const ulong HighPdAddress = 0xF000;
    public const ulong UserStack = 0x1F_0000;
    private const ulong Accessed = 1UL << 5, Dirty = 1UL << 6;

    public static byte[] Assemble()
    {
        var a = new Assembler(64);
        var user = a.CreateLabel();
        var round = a.CreateLabel();
        var write = a.CreateLabel();
        var low = a.CreateLabel();
        UserModeEntry.LoadGdt(a);
        a.mov(rcx, UserStack);
        UserModeEntry.EnterUserMode(a, user, rcx);

        a.Label(ref user);
        a.mov(rbp, SignalAddress);
        a.mov(r9, LowRamBytes >> 12);
        a.mov(r10, (HighRamBase - LowRamBytes) >> 12);
        a.mov(r11, RoundCounter);
        a.mov(r12, ContinuousFlag);
        a.xor(r8d, r8d);
        a.Label(ref round);
        a.mov(rsi, r8);
        a.and(esi, 7);
        a.add(rsi, 512);
        a.mov(ecx, PagesPerRound);
        a.Label(ref write);
        a.mov(rax, rsi);
        a.cmp(rax, r9);
        a.jb(low);
        a.add(rax, r10);
        a.Label(ref low);
        a.shl(rax, 12);
        a.mov(__qword_ptr[rax], r8);
        a.add(rsi, 100);
        a.dec(ecx);
        a.jnz(write);
        a.inc(r8);
        a.mov(__qword_ptr[r11], r8);
        a.cmp(__qword_ptr[r12], 0);
        a.jne(round);
        a.mov(__byte_ptr[rbp], 1);
        a.jmp(round);

        using var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), LoadAddress);
        return stream.ToArray();
    }

    /// <summary>What dirty_harvest.c does too, on top of LongModeSetup's tables: user segments, U/A/D bits, the 4-5 GiB directory.</summary>
    public static void PrepareUserMode(GuestPhysicalMemory memory)
    {
        UserModeEntry.WriteSegments(memory);
        for (int i = 0; i < 512; i++)
            memory.WriteUInt64(HighPdAddress + (ulong)i * 8, (HighRamBase + ((ulong)i << 21)) | X86.PTE_PRESENT | X86.PTE_WRITE | X86.PTE_LARGE);
        memory.WriteUInt64(LongModeSetup.PdptAddress + 4 * 8, HighPdAddress | X86.PTE_PRESENT | X86.PTE_WRITE);
        const ulong userAccessed = X86.PTE_USER | Accessed;
        UserModeEntry.AddBits(memory, LongModeSetup.Pml4Address, 1, userAccessed, Dirty);
        UserModeEntry.AddBits(memory, LongModeSetup.PdptAddress, 5, userAccessed, Dirty);
        UserModeEntry.AddBits(memory, LongModeSetup.PdAddress, 4 * 512, userAccessed, Dirty);
        UserModeEntry.AddBits(memory, HighPdAddress, 512, userAccessed, Dirty);
    }
}
