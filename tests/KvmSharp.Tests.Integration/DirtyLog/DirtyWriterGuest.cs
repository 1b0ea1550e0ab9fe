using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Memory;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.DirtyLog;

/// <summary>
/// A long-mode guest run by every vCPU. It drops to CPL3 at once:
/// guest CPL0 code is emulated on a PVM host, and that emulator pushes dirty-ring entries past the
/// ring's reserve without exiting (kernel WARN in kvm_dirty_ring_push), which loses entries; at CPL3
/// each first write faults into KVM, which honours the reserve. Each round it reads its mailbox (a
/// count, then that many gpas), stores a qword at each gpa and reports to the <see cref="RoundGate"/>
/// (an MMIO write: this PVM ignores IOPL, so CPL3 cannot use ports); a count of all ones makes it
/// write <see cref="Finished"/> there and spin until the host stops the VM.
/// </summary>
internal static class DirtyWriterGuest
{
    public const ulong MailboxBase = 0x200000;
    public const ulong MailboxStride = 0x4000;
    public const int MaxWritesPerRound = (int)(MailboxStride / 8) - 1;
    /// <summary>Where the <see cref="RoundGate"/> sits on the MMIO bus (no memslot there).</summary>
    public const ulong GateAddress = 0xD000_0000;
    public const byte Finished = 0xFF;
    private const ulong UserStackBase = 0x300000;

    public static GuestImage Image => TestGuest.LongMode(a =>
    {
        var user = a.CreateLabel();
        var round = a.CreateLabel();
        var writes = a.CreateLabel();
        var signal = a.CreateLabel();
        var done = a.CreateLabel();
        // CPL0: the GDT with user segments, then iretq to CPL3 on a per-vCPU stack (rsi = vCPU id).
        UserModeEntry.LoadGdt(a);
        a.mov(rcx, rsi);
        a.shl(rcx, 12);
        a.mov(rax, UserStackBase + 0xFF0);
        a.add(rcx, rax);
        UserModeEntry.EnterUserMode(a, user, rcx);

        a.Label(ref user);
        a.mov(rbp, GateAddress);
        a.mov(rbx, rsi);
        a.imul(rbx, rbx, (int)MailboxStride);
        a.mov(rax, MailboxBase);
        a.add(rbx, rax);
        a.Label(ref round);
        a.mov(rcx, __qword_ptr[rbx]);
        a.cmp(rcx, -1);
        a.je(done);
        a.lea(rdi, __qword_ptr[rbx + 8]);
        a.test(rcx, rcx);
        a.jz(signal);
        a.Label(ref writes);
        a.mov(rax, __qword_ptr[rdi]);
        a.mov(__qword_ptr[rax], rcx);
        a.add(rdi, 8);
        a.dec(rcx);
        a.jnz(writes);
        a.Label(ref signal);
        a.mov(__byte_ptr[rbp], 1);
        a.jmp(round);
        a.Label(ref done);
        a.mov(__byte_ptr[rbp], Finished);
        var spin = a.CreateLabel();
        a.Label(ref spin);
        a.pause();
        a.jmp(spin);
    });

    /// <summary>User segments after the VM's GDT and the U bit on the identity map, so the guest can run at CPL3.</summary>
    public static void PrepareUserMode(GuestPhysicalMemory memory)
    {
        UserModeEntry.WriteSegments(memory);
        UserModeEntry.AddBits(memory, LongModeSetup.Pml4Address, 1, X86.PTE_USER);
        UserModeEntry.AddBits(memory, LongModeSetup.PdptAddress, 4, X86.PTE_USER);
        UserModeEntry.AddBits(memory, LongModeSetup.PdAddress, 4 * 512, X86.PTE_USER);
    }

    public static void Post(GuestPhysicalMemory memory, int vcpu, IReadOnlyList<ulong> gpas)
    {
        if (gpas.Count > MaxWritesPerRound) throw new ArgumentException($"at most {MaxWritesPerRound} writes per round");
        ulong mailbox = MailboxBase + (ulong)vcpu * MailboxStride;
        for (int i = 0; i < gpas.Count; i++) memory.WriteUInt64(mailbox + 8 + (ulong)i * 8, gpas[i]);
        memory.WriteUInt64(mailbox, (ulong)gpas.Count);
    }

    public static void PostHalt(GuestPhysicalMemory memory, int vcpu) =>
        memory.WriteUInt64(MailboxBase + (ulong)vcpu * MailboxStride, ulong.MaxValue);
}
