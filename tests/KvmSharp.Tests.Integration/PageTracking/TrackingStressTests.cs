using System.Diagnostics;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using Xunit;
using Xunit.Abstractions;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.PageTracking;

/// <summary>
/// Two vCPUs write and read back a region without pause while the host adds and removes tracking on
/// random gfns thousands of times: no lost write, no torn value, nothing reaching the MMIO bus, and
/// every reported write carries bytes the guest really wrote there.
/// </summary>
public sealed class TrackingStressTests(ITestOutputHelper output)
{
    private const ulong Region = 0x400000, StopFlag = 0x3F0000, Progress = 0x3F0100;
    private const int Pages = 16, SlotsPerPage = 32, TrackingOperations = 3000;

    [KvmFact]
    public void Vcpus_see_consistent_memory_while_tracking_changes_thousands_of_times()
    {
        // vCPU n owns qword n of every 16-byte pair: it writes a value whose halves both encode a
        // counter, reads it back at once, and stops with status 1 on any mismatch (lost or torn).
        var image = TestGuest.LongMode(a =>
        {
            var round = a.CreateLabel();
            var slot = a.CreateLabel();
            var fail = a.CreateLabel();
            var done = a.CreateLabel();
            a.mov(r13, rsi);                       // vCPU id
            a.mov(r8, 0x0000_0001_0000_0001UL);    // counter step in both halves
            a.xor(r9, r9);                         // counter
            a.Label(ref round);
            a.mov(rax, StopFlag);
            a.cmp(__qword_ptr[rax], 0);
            a.jne(done);
            a.mov(rbx, Region);
            a.lea(rbx, __[rbx + r13 * 8]);
            a.mov(ecx, Pages * SlotsPerPage);
            a.Label(ref slot);
            a.add(r9, r8);
            a.mov(__qword_ptr[rbx], r9);
            a.mov(rdx, __qword_ptr[rbx]);
            a.cmp(rdx, r9);
            a.jne(fail);
            a.add(rbx, 4096 / SlotsPerPage);
            a.dec(ecx);
            a.jnz(slot);
            a.mov(rax, Progress);
            a.@lock.inc(__qword_ptr[rax + r13 * 8]);
            a.jmp(round);
            a.Label(ref done);
            a.test(r13, r13);
            var park = a.CreateLabel();
            a.jnz(park);
            // vCPU 0 waits until vCPU 1 has seen the flag too (its progress stops changing is enough:
            // it writes its final marker).
            var wait = a.CreateLabel();
            a.mov(rax, Progress + 0x40);
            a.Label(ref wait);
            a.cmp(__qword_ptr[rax], 1);
            a.jne(wait);
            TestGuest.ExitWith(a, 0);
            a.Label(ref park);
            a.mov(rax, Progress + 0x40);
            a.mov(__qword_ptr[rax], 1);
            var halt = a.CreateLabel();
            a.Label(ref halt);
            a.hlt();
            a.jmp(halt);
            a.Label(ref fail);
            TestGuest.ExitWith(a, 1);
        });
        using var vm = TestGuest.Create(image, memory: 8UL << 20, cpus: 2);
        var notifier = new RecordingNotifier();
        long badReports = 0;
        notifier.OnWrite = (gpa, bytes) =>
        {
            // A reported write must be a whole qword of the form (k << 32) | k at an owned slot.
            ulong value = bytes.Length == 8 ? BitConverter.ToUInt64(bytes) : 0;
            if (bytes.Length != 8 || (value >> 32) != (value & 0xFFFFFFFF) || (gpa - Region) % (4096 / SlotsPerPage) > 8)
                Interlocked.Increment(ref badReports);
        };
        vm.PageTracker.Register(notifier);

        vm.Start();
        var random = new Random(1234);
        var tracked = new HashSet<ulong>();
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < TrackingOperations; i++)
        {
            ulong gfn = (Region >> 12) + (ulong)random.Next(Pages);
            if (tracked.Remove(gfn)) vm.PageTracker.RemoveGfn(gfn);
            else
            {
                vm.PageTracker.AddGfn(gfn);
                tracked.Add(gfn);
            }
            Assert.Null(vm.Outcome);
        }
        double seconds = clock.Elapsed.TotalSeconds;
        ulong progress0 = vm.Memory.ReadUInt64(Progress), progress1 = vm.Memory.ReadUInt64(Progress + 8);
        vm.Memory.WriteUInt64(StopFlag, 1);
        Assert.True(vm.WaitForExit(TimeSpan.FromSeconds(60), out var outcome), "guest did not stop");

        output.WriteLine($"{TrackingOperations} tracking operations in {seconds:F2} s ({TrackingOperations / seconds:F0}/s); " +
                         $"guest rounds {progress0}+{progress1}; {notifier.Writes.Count} tracked writes reported");
        Assert.Equal(VmOutcome.GuestExit(0), outcome);
        Assert.True(progress0 > 0 && progress1 > 0, "a vCPU made no progress while tracking changed");
        Assert.True(notifier.Writes.Count > 0, "no tracked write was ever reported");
        Assert.Equal(0, Interlocked.Read(ref badReports));
        Assert.Equal(0, vm.MmioBus.UnhandledReads + vm.MmioBus.UnhandledWrites);
        Assert.Equal(0, vm.PortBus.UnhandledReads + vm.PortBus.UnhandledWrites);
        // The tracking state the host believes in is the one in force.
        foreach (ulong gfn in Enumerable.Range(0, Pages).Select(p => (Region >> 12) + (ulong)p))
            Assert.Equal(tracked.Contains(gfn) ? 1 : 0, vm.PageTracker.Count(gfn));
    }
}
