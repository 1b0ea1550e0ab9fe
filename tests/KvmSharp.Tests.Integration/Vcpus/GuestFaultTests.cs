using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Vcpus;

/// <summary>A misbehaving guest never crashes the VMM: faults end that VM with a report.</summary>
public sealed class GuestFaultTests
{
    [KvmFact]
    public void A_triple_fault_ends_the_vm_with_registers_and_the_disassembly_at_rip()
    {
        // No IDT (limit 0): ud2 raises #UD, which cannot be delivered, then #DF, then shutdown.
        var image = TestGuest.LongMode(a =>
        {
            a.mov(rax, 0x1122334455667788);
            a.mov(rbx, 0xCAFE);
            a.ud2();
            a.nop();
        });
        using var vm = TestGuest.Create(image);
        var outcome = TestGuest.RunToEnd(vm);

        Assert.Equal(VmExitKind.Fault, outcome.Kind);
        Assert.Equal(VmOutcome.FaultCode, outcome.ExitCode);
        Assert.Contains("KVM_EXIT_SHUTDOWN", outcome.Report);
        Assert.Contains("rax=1122334455667788", outcome.Report);
        Assert.Contains("rbx=000000000000cafe", outcome.Report);
        Assert.Matches(@"=> 0000000000100014  ud2", outcome.Report!);
    }

    [KvmFact]
    public void Unclaimed_ports_read_0xff_and_stray_writes_are_dropped_and_counted()
    {
        var image = TestGuest.LongMode(a =>
        {
            a.mov(dx, 0x1234);
            a.@in(al, dx);
            a.mov(__byte_ptr[0x200000], al);
            a.@out(dx, al);
            a.@out(dx, al);
            a.mov(rbx, 0xFE00_0000UL); // nothing mapped here: an MMIO write nobody claims
            a.mov(__dword_ptr[rbx], eax);
            TestGuest.ExitWith(a, 7);
        });
        using var vm = TestGuest.Create(image);
        var outcome = TestGuest.RunToEnd(vm);

        Assert.Equal(VmOutcome.GuestExit(7), outcome);
        Assert.Equal(0xFFUL, vm.Memory.ReadUInt64(0x200000) & 0xFF);
        Assert.Equal(1, vm.PortBus.UnhandledReads);
        Assert.Equal(2, vm.PortBus.UnhandledWrites);
        Assert.Equal(1, vm.MmioBus.UnhandledWrites);
        Assert.Equal(0xFE00_0000UL, vm.MmioBus.LastUnhandledAddress);
    }
}
