using Iced.Intel;
using KvmSharp.Devices.Serial;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Machine;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Seams;

/// <summary>
/// A tiny long-mode guest that takes interrupts: IDT gates for <see cref="MsiVector"/> and
/// <see cref="IoApicVector"/> whose handlers end the VM with their vector as the exit status, the
/// PICs masked, the LAPIC software-enabled, IOAPIC pin <see cref="IoApicPin"/> routed to <see cref="IoApicVector"/>;
/// then it reports <see cref="ReadyByte"/> on <see cref="ReadyPort"/>, writes <see cref="Doorbell"/>
/// once, and halts with interrupts on. Some hundred CPL0 instructions (PVM emulates them).
/// </summary>
public static class InterruptGuest
{
    public const byte MsiVector = 0x40, IoApicVector = 0x41, ReadyByte = 0x5A;
    public const uint IoApicPin = 4; // COM1's ISA IRQ, raised by the host as KvmIrqLine does for the 16550
    public const ushort ReadyPort = 0x510;
    public const ulong Doorbell = 0xD000_0000; // in the PCI hole: no RAM, no device
    public const ulong MsiAddress = 0xFEE0_0000; // LAPIC of APIC id 0, physical destination
    private const ulong IdtBase = 0x2000, IdtrAddress = 0x1F00;
    private const ulong LapicSvr = 0xFEE0_00F0, IoApicSelect = 0xFEC0_0000, IoApicWindow = 0xFEC0_0010;

    public static GuestImage Image { get; } = TestGuest.LongMode(a =>
    {
        var msiHandler = a.CreateLabel();
        var ioApicHandler = a.CreateLabel();
        var idle = a.CreateLabel();
        Gate(a, MsiVector, msiHandler);
        Gate(a, IoApicVector, ioApicHandler);
        a.mov(__word_ptr[IdtrAddress], 0x0FFF);
        a.mov(__qword_ptr[IdtrAddress + 2], (int)IdtBase);
        a.lidt(__[IdtrAddress]);
        a.mov(al, 0xFF);                                   // mask both PICs: KVM wires the BSP's LINT0 to them as ExtINT
        a.@out(0x21, al);                                  // at reset, and GSI 4 is routed to the PIC as well
        a.@out(0xA1, al);
        Store32(a, LapicSvr, 0x1FF);                       // APIC software enable, spurious vector 0xFF
        Store32(a, IoApicSelect, 0x10 + 2 * (int)IoApicPin); // redirection entry, low half
        Store32(a, IoApicWindow, IoApicVector);              // fixed, physical, edge, unmasked
        Store32(a, IoApicSelect, 0x11 + 2 * (int)IoApicPin); // high half: destination APIC 0
        Store32(a, IoApicWindow, 0);
        a.mov(dx, ReadyPort);
        a.mov(al, ReadyByte);
        a.@out(dx, al);
        Store32(a, Doorbell, 1);
        a.Label(ref idle);
        a.sti();
        a.hlt();
        a.jmp(idle);
        a.Label(ref msiHandler);
        TestGuest.ExitWith(a, MsiVector);
        a.Label(ref ioApicHandler);
        TestGuest.ExitWith(a, IoApicVector);
    }, "interrupt-guest");

    // Addresses above 2 GiB do not fit a sign-extended disp32: go through a register.
    private static void Store32(Assembler a, ulong address, int value)
    {
        a.mov(rbx, address);
        a.mov(__dword_ptr[rbx], value);
    }

    // A 64-bit interrupt gate (present, DPL 0, type 0xE) for vector -> handler, built by the guest.
    private static void Gate(Assembler a, byte vector, Label handler)
    {
        ulong gate = IdtBase + vector * 16UL;
        a.lea(rax, __[handler]);
        a.mov(__word_ptr[gate], ax);
        a.mov(__word_ptr[gate + 2], 0x08);
        a.mov(__word_ptr[gate + 4], 0x8E00);
        a.shr(rax, 16);
        a.mov(__word_ptr[gate + 6], ax);
        a.shr(rax, 16);
        a.mov(__dword_ptr[gate + 8], eax);
        a.mov(__dword_ptr[gate + 12], 0);
    }

    public static VirtualMachine Create() =>
        VirtualMachine.Create(new VmConfig { MemoryBytes = 16UL << 20, Image = Image, Irqchip = true, SerialSink = new CapturingSerialSink() });
}
