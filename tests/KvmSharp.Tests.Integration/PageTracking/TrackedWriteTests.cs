using Iced.Intel;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.PageTracking;

/// <summary>Guest writes to tracked pages, on the real /dev/kvm: exact gpa and bytes, in order, after they land.</summary>
public sealed class TrackedWriteTests
{
    private const ulong Page = 0x300000;
    private const ulong Gfn = Page >> 12;

    private static (VirtualMachine Vm, RecordingNotifier Notifier) TrackedVm(Action<Assembler> code, int cpus = 1, params ulong[] gfns)
    {
        var vm = TestGuest.Create(TestGuest.LongMode(code), memory: 8UL << 20, cpus: cpus);
        var notifier = new RecordingNotifier(vm.Memory);
        vm.PageTracker.Register(notifier);
        foreach (ulong gfn in gfns.Length == 0 ? [Gfn] : gfns) vm.PageTracker.AddGfn(gfn);
        return (vm, notifier);
    }

    private static byte[] Le(ulong value, int size) => BitConverter.GetBytes(value)[..size];

    [KvmFact]
    public void Byte_word_dword_and_qword_writes_are_reported_exactly_and_in_order_after_they_land()
    {
        var (vm, notifier) = TrackedVm(a =>
        {
            a.mov(rbx, Page);
            a.mov(__byte_ptr[rbx + 1], 0x11);
            a.mov(__word_ptr[rbx + 0x10], 0x2222);
            a.mov(__dword_ptr[rbx + 0x20], 0x33333333);
            a.mov(rax, 0x4444_5555_6666_7777UL);
            a.mov(__qword_ptr[rbx + 0x38], rax);
            TestGuest.ExitWith(a, 0);
        });
        using (vm)
        {
            Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm));
            var writes = notifier.Writes;
            Assert.Equal(
                [(Page + 1, "11"), (Page + 0x10, "2222"), (Page + 0x20, "33333333"), (Page + 0x38, "7777666655554444")],
                writes.Select(w => (w.Gpa, Convert.ToHexString(w.Bytes))).ToArray());
            Assert.All(writes, w => Assert.Equal(w.Bytes, w.MemoryDuringCall));
            Assert.All(writes, w => Assert.Equal(0, w.Vcpu));
            Assert.Equal(0x4444_5555_6666_7777UL, vm.Memory.ReadUInt64(Page + 0x38));
            Assert.Equal(4, vm.PageTracker.TrackedWrites);
        }
    }

    [KvmFact]
    public void Compare_exchange_reports_only_when_it_succeeds_with_the_new_bytes()
    {
        var (vm, notifier) = TrackedVm(a =>
        {
            a.mov(rbx, Page);
            a.mov(rax, 5UL);
            a.mov(__qword_ptr[rbx + 8], rax);      // reported: 05
            a.mov(rcx, 9UL);
            a.mov(rax, 5UL);
            a.@lock.cmpxchg(__qword_ptr[rbx + 8], rcx); // succeeds: reported 09
            a.mov(rax, 5UL);
            a.mov(rcx, 7UL);
            a.@lock.cmpxchg(__qword_ptr[rbx + 8], rcx); // fails (memory holds 9): not reported
            a.mov(__qword_ptr[rbx + 0x100], rax);   // rax now 9 (the failed cmpxchg loaded it): reported
            TestGuest.ExitWith(a, 0);
        });
        using (vm)
        {
            Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm));
            Assert.Equal(
                [(Page + 8, Le(5, 8)), (Page + 8, Le(9, 8)), (Page + 0x100, Le(9, 8))],
                notifier.Writes.Select(w => (w.Gpa, w.Bytes)).ToArray());
            Assert.Equal(9UL, vm.Memory.ReadUInt64(Page + 8));
        }
    }

    [KvmFact]
    public void Writing_the_value_memory_already_holds_is_still_reported()
    {
        var (vm, notifier) = TrackedVm(a =>
        {
            a.mov(rbx, Page);
            a.mov(__dword_ptr[rbx + 4], 0);
            a.mov(__dword_ptr[rbx + 4], 0);
            TestGuest.ExitWith(a, 0);
        });
        using (vm)
        {
            Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm));
            Assert.Equal(2, notifier.Writes.Count);
        }
    }
}
