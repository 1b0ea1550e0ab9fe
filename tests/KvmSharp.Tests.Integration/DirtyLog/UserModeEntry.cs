using Iced.Intel;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Memory;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.DirtyLog;

/// <summary>
/// How the dirty-logging guests (the tests' writer and kvmsharp-bench's) leave CPL0 at once: guest CPL0
/// is emulated on a PVM host. The host adds 64-bit user segments after LongModeSetup's GDT and points a
/// descriptor at it; the guest loads that GDT and irets to CPL3 with interrupts off.
/// </summary>
internal static class UserModeEntry
{
    /// <summary>Where the host writes the GDT's limit and base for the guest's lgdt (scripts/bench/dirty_harvest.c too).</summary>
    public const ulong GdtPointer = 0x5F0;
    private const ushort UserDataSelector = 0x30 | 3, UserCodeSelector = 0x38 | 3;
    private const ulong UserData64Descriptor = 0x00CFF3000000FFFF, UserCode64Descriptor = 0x00AFFB000000FFFF;

    /// <summary>Host side: the user code and data descriptors and the GDT pointer.</summary>
    public static void WriteSegments(GuestPhysicalMemory memory)
    {
        memory.WriteUInt64(LongModeSetup.GdtAddress + 0x30, UserData64Descriptor);
        memory.WriteUInt64(LongModeSetup.GdtAddress + 0x38, UserCode64Descriptor);
        Span<byte> pointer = stackalloc byte[10];
        BitConverter.TryWriteBytes(pointer, (ushort)(8 * 8 - 1));
        BitConverter.TryWriteBytes(pointer[2..], LongModeSetup.GdtAddress);
        memory.Write(GdtPointer, pointer);
    }

    /// <summary>Host side: OR <paramref name="bits"/> into <paramref name="entries"/> page-table entries (and <paramref name="largePageBits"/> into large-page ones).</summary>
    public static void AddBits(GuestPhysicalMemory memory, ulong table, int entries, ulong bits, ulong largePageBits = 0)
    {
        for (int i = 0; i < entries; i++)
        {
            ulong address = table + (ulong)i * 8;
            ulong entry = memory.ReadUInt64(address);
            memory.WriteUInt64(address, entry | bits | ((entry & X86.PTE_LARGE) != 0 ? largePageBits : 0));
        }
    }

    /// <summary>Guest side, first: load the GDT with the user segments (clobbers rax).</summary>
    public static void LoadGdt(Assembler a)
    {
        a.mov(rax, GdtPointer);
        a.lgdt(__[rax]);
    }

    /// <summary>Guest side, then: iretq to <paramref name="user"/> at CPL3 on the stack in <paramref name="stack"/> (clobbers rax).</summary>
    public static void EnterUserMode(Assembler a, Label user, AssemblerRegister64 stack)
    {
        a.push(UserDataSelector);
        a.push(stack);
        a.push(0x0002); // IF clear
        a.push(UserCodeSelector);
        a.lea(rax, __[user]);
        a.push(rax);
        a.iretq();
    }
}
