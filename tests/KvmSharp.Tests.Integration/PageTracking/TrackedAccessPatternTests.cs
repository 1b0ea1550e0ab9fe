using Iced.Intel;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.PageTracking;

/// <summary>String instructions, reads, several vCPUs, and the end of tracking, on the real /dev/kvm.</summary>
public sealed class TrackedAccessPatternTests
{
    private const ulong Tracked = 0x300000, Next = 0x301000, Untracked = 0x400000;

    private static (VirtualMachine, RecordingNotifier) Build(Action<Assembler> code, int cpus = 1, params ulong[] gfns) =>
        Build(code, TrackingMode.TrapAccesses, cpus, gfns);

    private static (VirtualMachine, RecordingNotifier) Build(Action<Assembler> code, TrackingMode mode, int cpus = 1, params ulong[] gfns)
    {
        var vm = TestGuest.Create(TestGuest.LongMode(code), memory: 8UL << 20, cpus: cpus);
        var notifier = new RecordingNotifier(vm.Memory);
        vm.PageTracker.Register(notifier);
        foreach (ulong gfn in gfns) vm.PageTracker.AddGfn(gfn, mode);
        return (vm, notifier);
    }

    [KvmFact]
    public void Rep_stos_across_the_end_of_a_tracked_page_reports_exactly_the_tracked_bytes()
    {
        var (vm, notifier) = Build(a =>
        {
            a.mov(rdi, Next - 6);     // 6 bytes in the tracked page, 10 in the untracked one after it
            a.mov(ecx, 16);
            a.mov(al, 0xAB);
            a.rep.stosb();
            TestGuest.ExitWith(a, 0);
        }, gfns: Tracked >> 12);
        using (vm)
        {
            Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm));
            var reported = notifier.Writes.SelectMany(w => Enumerable.Range(0, w.Bytes.Length).Select(i => (w.Gpa + (ulong)i, w.Bytes[i]))).ToList();
            Assert.Equal(Enumerable.Range(0, 6).Select(i => (Next - 6 + (ulong)i, (byte)0xAB)), reported);
            var memory = new byte[16];
            vm.Memory.Read(Next - 6, memory);
            Assert.All(memory, b => Assert.Equal(0xAB, b));
            Assert.All(notifier.Writes, w => Assert.Equal(w.Bytes, w.MemoryDuringCall));
        }
    }

    [KvmFact]
    public void Rep_movs_across_two_tracked_pages_reports_every_byte_once_in_order()
    {
        var (vm, notifier) = Build(a =>
        {
            a.mov(rsi, Untracked);   // source: a pattern in an untracked page
            a.mov(ecx, 32);
            var fill = a.CreateLabel();
            a.Label(ref fill);
            a.mov(__byte_ptr[rsi + rcx - 1], cl);
            a.dec(ecx);
            a.jnz(fill);
            a.mov(rdi, Next - 16);   // destination straddles two tracked pages
            a.mov(ecx, 4);
            a.rep.movsq();
            TestGuest.ExitWith(a, 0);
        }, gfns: [Tracked >> 12, Next >> 12]);
        using (vm)
        {
            Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm));
            var reported = notifier.Writes.SelectMany(w => Enumerable.Range(0, w.Bytes.Length).Select(i => (w.Gpa + (ulong)i, w.Bytes[i]))).ToList();
            Assert.Equal(Enumerable.Range(0, 32).Select(i => (Next - 16 + (ulong)i, (byte)(i + 1))), reported);
            Assert.Contains(notifier.Writes, w => w.Gpa < Next);
            Assert.Contains(notifier.Writes, w => w.Gpa >= Next);
        }
    }

    [KvmFact]
    public void Reads_of_write_trapped_pages_and_writes_to_untracked_pages_never_exit()
    {
        const int Iterations = 2000;
        var (vm, notifier) = Build(a =>
        {
            var loop = a.CreateLabel();
            a.mov(rbx, Tracked);
            a.mov(rdx, Untracked);
            a.mov(ecx, Iterations);
            a.Label(ref loop);
            a.mov(rax, __qword_ptr[rbx + rcx * 8 - 8]);   // read a tracked page
            a.mov(__qword_ptr[rdx + rcx * 8 - 8], rcx);   // write an untracked page of the same slot
            a.dec(ecx);
            a.jnz(loop);
            TestGuest.ExitWith(a, 0);
        }, TrackingMode.TrapWrites, gfns: [Tracked >> 12, (Tracked >> 12) + 1, (Tracked >> 12) + 2, (Tracked >> 12) + 3]);
        using (vm)
        {
            Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm));
            Assert.Empty(notifier.Writes);
            Assert.True(vm.Vcpus[0].ExitCount < 10, $"{vm.Vcpus[0].ExitCount} exits for {Iterations} reads and writes");
            Assert.Equal((ulong)Iterations, vm.Memory.ReadUInt64(Untracked + (Iterations - 1) * 8));
            Assert.Equal(0, vm.MmioBus.UnhandledReads + vm.MmioBus.UnhandledWrites);
        }
    }

    [KvmFact]
    public void Two_vcpus_writing_tracked_pages_at_once_are_each_reported_with_their_vcpu()
    {
        const int Writes = 300;
        var (vm, notifier) = Build(a =>
        {
            // vCPU n writes n+1 into qword slots of page Tracked + n*4096.
            var loop = a.CreateLabel();
            a.mov(rbx, rsi);
            a.shl(rbx, 12);
            a.mov(rax, Tracked);
            a.add(rbx, rax);
            a.lea(rax, __[rsi + 1]);
            a.mov(ecx, Writes);
            a.Label(ref loop);
            a.mov(__qword_ptr[rbx + rcx * 8 - 8], rax);
            a.dec(ecx);
            a.jnz(loop);
            var park = a.CreateLabel();
            a.test(rsi, rsi);
            a.jnz(park);
            // vCPU 0 waits for vCPU 1's last write before ending the VM.
            var wait = a.CreateLabel();
            a.mov(rdx, Next);
            a.Label(ref wait);
            a.cmp(__qword_ptr[rdx], 2);
            a.jne(wait);
            TestGuest.ExitWith(a, 0);
            a.Label(ref park);
            a.hlt();
            a.jmp(park);
        }, cpus: 2, gfns: [Tracked >> 12, Next >> 12]);
        using (vm)
        {
            Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm, TimeSpan.FromSeconds(60)));
            var writes = notifier.Writes;
            for (int vcpu = 0; vcpu < 2; vcpu++)
            {
                var mine = writes.Where(w => w.Vcpu == vcpu).ToList();
                Assert.Equal(Writes, mine.Count);
                Assert.All(mine, w => Assert.Equal((ulong)vcpu + 1, BitConverter.ToUInt64(w.Bytes)));
                Assert.All(mine, w => Assert.Equal(Tracked + (ulong)vcpu * 4096, w.Gpa & ~0xFFFUL));
                // Each vCPU's writes arrive in its program order (descending addresses).
                Assert.Equal(mine.Select(w => w.Gpa).OrderByDescending(g => g), mine.Select(w => w.Gpa));
            }
        }
    }

    [KvmFact]
    public void After_RemoveGfn_no_more_writes_are_reported_and_the_page_stops_exiting()
    {
        var signals = new SignalPort();
        var (vm, notifier) = Build(a =>
        {
            a.mov(rbx, Tracked);
            a.mov(__qword_ptr[rbx], 1);          // reported
            a.mov(al, 1);
            a.@out(0xE0, al);                    // tell the host; it removes tracking and resumes us
            var wait = a.CreateLabel();
            a.mov(rdx, Untracked);
            a.Label(ref wait);
            a.cmp(__qword_ptr[rdx], 0x5A);
            a.jne(wait);
            a.mov(__qword_ptr[rbx], 2);          // not reported
            a.mov(__qword_ptr[rbx + 8], 3);      // not reported
            TestGuest.ExitWith(a, 0);
        }, gfns: Tracked >> 12);
        using (vm)
        {
            vm.PortBus.Register(0xE0, 1, signals, "signal");
            vm.Start();
            Assert.True(signals.WaitFor(1, TimeSpan.FromSeconds(10)));
            vm.PageTracker.RemoveGfn(Tracked >> 12);
            Assert.Equal(0, vm.PageTracker.Count(Tracked >> 12));
            Assert.Single(vm.KernelSlots.PiecesOf(0));
            long exitsBefore = vm.Vcpus[0].ExitCount;
            vm.Memory.WriteUInt64(Untracked, 0x5A);
            Assert.True(vm.WaitForExit(TimeSpan.FromSeconds(20), out var outcome));
            Assert.Equal(VmOutcome.GuestExit(0), outcome);
            Assert.Single(notifier.Writes);
            Assert.Equal(2UL, vm.Memory.ReadUInt64(Tracked));
            Assert.True(vm.Vcpus[0].ExitCount - exitsBefore <= 2, "writes to the untracked page still exited");
        }
    }
}
