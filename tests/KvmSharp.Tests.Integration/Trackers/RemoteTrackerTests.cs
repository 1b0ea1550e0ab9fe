using System.Text.RegularExpressions;
using Iced.Intel;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Memory.Regions;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Trackers.Remote;
using Xunit;
using Xunit.Abstractions;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Trackers;

/// <summary>
/// Page trackers in other processes (issue 10 point 5), on the real /dev/kvm: `kvmsharp track` and a C
/// client see exactly what an in-process notifier sees on the same VM; a tracker that never acks is
/// detached and the guest goes on; an asynchronous ring that overflows says how much it lost; a
/// tracker that goes away mid-run is unregistered and its counts taken back.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed partial class RemoteTrackerTests(ITestOutputHelper output)
{
    // The sync deadline (ms) of trackers that must not be detached: the default 1 s is missed on a loaded machine.
    private const string LoadedMachineDeadline = "30000";

    private const ulong Page = 0x300000, Gfn = Page >> 12;
    private static readonly TimeSpan Attach = TimeSpan.FromSeconds(60), Exit = TimeSpan.FromSeconds(30);

    private static VirtualMachine MemfdVm(Action<Assembler> code, int cpus = 1) =>
        VirtualMachine.Create(new VmConfig
        {
            MemoryBytes = 8UL << 20, Cpus = cpus, Image = TestGuest.LongMode(code), SerialSink = new Devices.Serial.CapturingSerialSink(), MemfdBacking = true,
        });

    private static string SocketPath() => Path.Combine(Path.GetTempPath(), $"kvmsharp-trk-{Guid.NewGuid():N}.sock");

    // ---- the scenarios: guests of the page-tracking tests (TrackedWriteTests, TrackedStoreCheck, two vCPUs, DELETE) ----

    public static TheoryData<string, bool> Scenarios()
    {
        var data = new TheoryData<string, bool>();
        foreach (string name in new[] { "plain", "cmpxchg", "unchanged", "rep-movsq", "straddle-string", "locked", "two-vcpus", "delete" })
        {
            data.Add(name, true);
            data.Add(name, false);
        }
        return data;
    }

    private const ushort ExtraSlot = 7;
    private const ulong ExtraGpa = 0x0800_0000, ExtraSize = 0x10000;

    private static (Action<Assembler> Code, int Cpus, ulong FirstGfn, ulong Pages) Scenario(string name) => name switch
    {
        "plain" => (a =>
        {
            a.mov(rbx, Page);
            a.mov(__byte_ptr[rbx + 1], 0x11);
            a.mov(__word_ptr[rbx + 0x10], 0x2222);
            a.mov(__dword_ptr[rbx + 0x20], 0x33333333);
            a.mov(rax, 0x4444_5555_6666_7777UL);
            a.mov(__qword_ptr[rbx + 0x38], rax);
            a.mov(rax, Page + 0x2000);
            a.mov(__qword_ptr[rax], rbx);            // an untracked page: nobody hears it
            TestGuest.ExitWith(a, 0);
        }, 1, Gfn, 1),
        "cmpxchg" => (a =>
        {
            a.mov(rbx, Page);
            a.mov(rax, 5UL);
            a.mov(__qword_ptr[rbx + 8], rax);
            a.mov(rcx, 9UL);
            a.mov(rax, 5UL);
            a.@lock.cmpxchg(__qword_ptr[rbx + 8], rcx); // succeeds
            a.mov(rax, 5UL);
            a.mov(rcx, 7UL);
            a.@lock.cmpxchg(__qword_ptr[rbx + 8], rcx); // fails: not reported
            a.mov(__qword_ptr[rbx + 0x100], rax);
            TestGuest.ExitWith(a, 0);
        }, 1, Gfn, 1),
        "unchanged" => (a =>
        {
            a.mov(rbx, Page);
            a.mov(__dword_ptr[rbx + 4], 0);
            a.mov(__dword_ptr[rbx + 4], 0);
            TestGuest.ExitWith(a, 0);
        }, 1, Gfn, 1),
        "rep-movsq" => (a =>
        {
            a.mov(rsi, Page + 0x2000);               // untracked source
            a.mov(rax, 0x0102030405060708UL);
            a.mov(__qword_ptr[rsi], rax);
            a.mov(__qword_ptr[rsi + 8], rax);
            a.mov(rdi, Page + 0x40);
            a.mov(ecx, 2);
            a.rep.movsq();
            TestGuest.ExitWith(a, 0);
        }, 1, Gfn, 1),
        "straddle-string" => (a =>
        {
            a.mov(rbx, Page);
            a.mov(rax, 0x1122334455667788UL);
            a.mov(__qword_ptr[rbx + 0xFFC], rax);    // straddles the two tracked pages
            a.lea(rdi, __[rbx + 0x1F0]);
            a.mov(ecx, 0x30);
            a.mov(al, 0x5A);
            a.rep.stosb();                             // crosses into the untracked third page
            TestGuest.ExitWith(a, 0);
        }, 1, Gfn, 2),
        "locked" => (a =>
        {
            a.mov(rbx, Page);
            a.@lock.inc(__dword_ptr[rbx]);
            a.mov(eax, 3);
            a.@lock.xadd(__dword_ptr[rbx], eax);
            a.mov(ecx, 0x77);
            a.xchg(__dword_ptr[rbx + 8], ecx);
            a.@lock.bts(__dword_ptr[rbx + 16], 5);
            TestGuest.ExitWith(a, 0);
        }, 1, Gfn, 1),
        "two-vcpus" => (TwoVcpus, 2, Gfn, 1),
        "delete" => (a =>
        {
            a.mov(rbx, ExtraGpa + 0x2000);
            a.mov(__dword_ptr[rbx + 4], 0xABCD);
            a.mov(__dword_ptr[rbx + 0x1000], 0xEF01);
            TestGuest.ExitWith(a, 0);
        }, 1, (ExtraGpa >> 12) + 2, 2),
        _ => throw new ArgumentException(name),
    };

    // vCPU 0 and 1 each write 50 qwords to their half of the tracked page; the last one out exits.
    private static void TwoVcpus(Assembler a)
    {
        var loop = a.CreateLabel();
        var wait = a.CreateLabel();
        a.mov(eax, 1);
        a.cpuid();
        a.shr(ebx, 24);                       // initial APIC id: 0 or 1
        a.mov(r8d, ebx);
        a.mov(rdi, Page);
        a.shl(rbx, 11);
        a.add(rdi, rbx);
        a.mov(ecx, 50);
        a.Label(ref loop);
        a.mov(__qword_ptr[rdi], rcx);
        a.add(rdi, 8);
        a.dec(ecx);
        a.jnz(loop);
        a.mov(rdx, Page + 0x2000);
        a.@lock.inc(__dword_ptr[rdx]);        // untracked
        a.Label(ref wait);
        a.cmp(__dword_ptr[rdx], 2);
        a.jne(wait);
        TestGuest.ExitWith(a, 0);
    }

    [KvmGccTheory]
    [MemberData(nameof(Scenarios))]
    public void Out_of_process_trackers_see_exactly_what_an_in_process_notifier_sees(string scenario, bool synchronous)
    {
        var (code, cpus, firstGfn, pages) = Scenario(scenario);
        string socket = SocketPath();
        using var vm = MemfdVm(code, cpus);
        GuestMemoryRegion? extra = null;
        if (scenario == "delete")
        {
            extra = GuestMemoryRegion.CreateMemfd(ExtraSize, "extra-slot");
            vm.Memslots.Apply(MemslotRequest.Create(ExtraSlot, ExtraGpa, ExtraSize, extra.HostAddress));
        }
        using var extraRegion = extra;
        var inProcess = new RecordingNotifier();
        vm.PageTracker.Register(inProcess);
        var gfns = Enumerable.Range(0, (int)pages).Select(i => firstGfn + (ulong)i).ToList();
        vm.PageTracker.AddGfns(gfns, TrackingMode.TrapWrites);

        List<TrackerProcess> trackers = [];
        using var server = RemoteTrackerServer.Start(vm, socket, log: output.WriteLine);
        try
        {
            // Deadlines long enough for a loaded test machine: a missed ack would detach a tracker.
            trackers.Add(TrackerProcess.CSharp(socket, $"0x{firstGfn << 12:x}+0x{pages << 12:x}", synchronous, synchronous ? ["--deadline", LoadedMachineDeadline] : []));
            trackers.Add(TrackerProcess.C(socket, firstGfn, pages, synchronous, $"deadline={LoadedMachineDeadline}"));
            foreach (var t in trackers) t.WaitForStderr("tracking", Attach);
            Assert.Equal(2, server.Attached);
            Assert.All(gfns, g => Assert.Equal(3, vm.PageTracker.Count(g))); // each tracker's count, as in the kernel

            Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm));
            if (scenario == "delete") vm.Memslots.Apply(MemslotRequest.Delete(ExtraSlot));
            if (!synchronous)
                foreach (var t in trackers) t.WaitForLine(_ => t.Lines.Count(IsEvent) >= Expected(inProcess).Count, TimeSpan.FromSeconds(10));
            server.Dispose();
            foreach (var t in trackers) Assert.Equal(0, t.WaitForExit(Exit));

            var expected = Expected(inProcess);
            Assert.NotEmpty(expected);
            foreach (var t in trackers)
            {
                output.WriteLine($"{t.Name}: {t.StandardError}");
                var seen = t.Lines.Where(IsEvent).ToList();
                foreach (string line in seen) output.WriteLine($"  {line}");
                Assert.Equal(Enumerable.Range(1, seen.Count).Select(i => (ulong)i), seen.Select(Seq)); // no gap, no repeat
                var lines = seen.Select(WithoutSeq).ToList();
                // Per vCPU in order (vCPUs interleave differently in the two notifiers' calls), and nothing else.
                foreach (var group in expected.GroupBy(Vcpu))
                    Assert.Equal(group.ToList(), lines.Where(l => Vcpu(l) == group.Key).ToList());
                Assert.Equal(expected.Count, lines.Count);
            }
            Assert.All(gfns, g => Assert.Equal(scenario == "delete" ? 0 : 1, vm.PageTracker.Count(g))); // the trackers' counts went with them
            Assert.Equal(1, vm.PageTracker.NotifierCount);
        }
        finally
        {
            foreach (var t in trackers) t.Dispose();
        }
    }

    private static List<string> Expected(RecordingNotifier notifier) =>
        notifier.Writes.Select(w => $"write vcpu={w.Vcpu} as=0 gpa=0x{w.Gpa:x} len={w.Bytes.Length} bytes={Convert.ToHexString(w.Bytes).ToLowerInvariant()} source=vcpu")
            .Concat(notifier.Removals.Select(r => $"remove-region gfn=0x{r.Gfn:x} pages={r.Pages}")).ToList();

    private static bool IsEvent(string line) => line.StartsWith("write ", StringComparison.Ordinal) || line.StartsWith("remove-region ", StringComparison.Ordinal) || line.StartsWith("gap ", StringComparison.Ordinal);

    [GeneratedRegex(@" seq=(\d+)")]
    private static partial Regex SeqField();

    private static ulong Seq(string line) => ulong.Parse(SeqField().Match(line).Groups[1].Value);
    private static string WithoutSeq(string line) => SeqField().Replace(line, "");

    private static string Vcpu(string line) => Regex.Match(line, @"vcpu=(-?\d+)") is { Success: true } m ? m.Groups[1].Value : "none";

    // ---- failure modes ----

    // Writes to the tracked page until the test sets the flag (an untracked dword), then exits.
    private static void WriteUntilFlag(Assembler a)
    {
        var loop = a.CreateLabel();
        a.mov(rbx, Page);
        a.mov(rdx, Page + 0x2000);
        a.xor(ecx, ecx);
        a.Label(ref loop);
        a.mov(__dword_ptr[rbx], ecx);
        a.inc(ecx);
        a.cmp(__dword_ptr[rdx], 0);
        a.je(loop);
        a.mov(__dword_ptr[rdx + 4], ecx);
        TestGuest.ExitWith(a, 0);
    }

    [KvmGccFact]
    public void A_synchronous_tracker_that_never_acks_is_detached_at_its_deadline_and_the_guest_goes_on()
    {
        string socket = SocketPath();
        using var vm = MemfdVm(a =>
        {
            a.mov(rbx, Page);
            for (int i = 0; i < 20; i++) a.mov(__dword_ptr[rbx + 4 * i], 0x100 + i);
            TestGuest.ExitWith(a, 0);
        });
        var inProcess = new RecordingNotifier();
        vm.PageTracker.Register(inProcess);
        vm.PageTracker.AddGfn(Gfn, TrackingMode.TrapWrites);
        using var server = RemoteTrackerServer.Start(vm, socket, log: output.WriteLine);
        var detached = new List<string>();
        server.TrackerDetached += detail => { lock (detached) detached.Add(detail); };
        using var hung = TrackerProcess.C(socket, Gfn, 1, synchronous: true, "noack", "deadline=300");
        hung.WaitForStderr("tracking", Attach);
        Assert.Equal(2, vm.PageTracker.Count(Gfn));

        var clock = System.Diagnostics.Stopwatch.StartNew();
        Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm, TimeSpan.FromSeconds(20)));
        output.WriteLine($"guest ran {clock.ElapsedMilliseconds} ms");
        Assert.Equal(20, inProcess.Writes.Count); // the in-process notifier heard every write

        Assert.Equal(3, hung.WaitForExit(Exit)); // told why: ETIMEDOUT
        Assert.Contains("did not ack", hung.StandardError);
        Assert.Single(server.Detachments);
        Assert.Contains("did not ack an event within its deadline", server.Detachments[0]);
        lock (detached) Assert.Single(detached);
        Assert.Equal(1, vm.PageTracker.Count(Gfn));   // its count taken back
        Assert.Equal(1, vm.PageTracker.NotifierCount);
        Assert.Equal(0, server.Attached);
    }

    [KvmGccFact]
    public void An_asynchronous_ring_that_overflows_reports_a_gap_with_the_number_lost()
    {
        const int Writes = 3000;
        string socket = SocketPath();
        using var vm = MemfdVm(a =>
        {
            var loop = a.CreateLabel();
            a.mov(rbx, Page);
            a.mov(ecx, Writes);
            a.Label(ref loop);
            a.mov(__qword_ptr[rbx], rcx);
            a.dec(ecx);
            a.jnz(loop);
            TestGuest.ExitWith(a, 0);
        });
        var inProcess = new RecordingNotifier();
        vm.PageTracker.Register(inProcess);
        vm.PageTracker.AddGfn(Gfn, TrackingMode.TrapWrites);
        using var server = RemoteTrackerServer.Start(vm, socket, log: output.WriteLine);
        // A 64 KiB ring holds about 1,170 of these 56-byte records; the tracker sleeps until the guest is done.
        using var slow = TrackerProcess.C(socket, Gfn, 1, synchronous: false, "ring=65536", "stall=1500");
        slow.WaitForStderr("tracking", Attach);

        Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm));
        Assert.Equal(Writes, inProcess.Writes.Count);
        Assert.True(slow.WaitForLine(l => l.StartsWith("gap ", StringComparison.Ordinal), TimeSpan.FromSeconds(20)), "no gap record came");
        server.Dispose();
        Assert.Equal(0, slow.WaitForExit(Exit));

        var lines = slow.Lines.Where(IsEvent).ToList();
        long seen = lines.Count(l => l.StartsWith("write ", StringComparison.Ordinal));
        long lost = lines.Where(l => l.StartsWith("gap ", StringComparison.Ordinal)).Sum(l => long.Parse(Regex.Match(l, @"lost=(\d+)").Groups[1].Value));
        output.WriteLine($"seen {seen}, lost {lost}, gaps {lines.Count(l => l.StartsWith("gap ", StringComparison.Ordinal))}");
        Assert.True(lost > 0);
        Assert.Equal(Writes, seen + lost);     // never silently lost
        Assert.Equal(Enumerable.Range(1, lines.Count).Select(i => (ulong)i), lines.Select(Seq));
        // What arrived is what the guest wrote, in order: the counter counts down.
        var values = lines.Where(l => l.StartsWith("write ", StringComparison.Ordinal))
            .Select(l => BitConverter.ToUInt64(Convert.FromHexString(Regex.Match(l, "bytes=([0-9a-f]+)").Groups[1].Value))).ToList();
        Assert.True(values.Zip(values.Skip(1)).All(p => p.First > p.Second), "the writes that arrived are out of order");
        Assert.Contains("events lost", server.Detachments.Single());
    }

    [KvmGccTheory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_tracker_that_disconnects_mid_run_is_unregistered_with_its_counts_and_the_guest_goes_on(bool synchronous)
    {
        string socket = SocketPath();
        using var vm = MemfdVm(WriteUntilFlag);
        var inProcess = new RecordingNotifier();
        vm.PageTracker.Register(inProcess);
        vm.PageTracker.AddGfn(Gfn, TrackingMode.TrapWrites);
        using var server = RemoteTrackerServer.Start(vm, socket, log: output.WriteLine);
        var tracker = TrackerProcess.C(socket, Gfn, 1, synchronous, $"deadline={LoadedMachineDeadline}");
        try
        {
            tracker.WaitForStderr("tracking", Attach);
            vm.Start();
            Assert.True(tracker.WaitForLine(l => l.StartsWith("write ", StringComparison.Ordinal), TimeSpan.FromSeconds(20)), "the tracker heard no write");
            tracker.Kill();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (server.Detachments.Count == 0 && clock.Elapsed < TimeSpan.FromSeconds(20)) Thread.Sleep(10);
            Assert.Contains("disconnected", Assert.Single(server.Detachments));
            Assert.Equal(1, vm.PageTracker.Count(Gfn));
            Assert.Equal(1, vm.PageTracker.NotifierCount);
            int before = inProcess.Writes.Count;
            clock.Restart();
            while (inProcess.Writes.Count < before + 100 && clock.Elapsed < TimeSpan.FromSeconds(20)) Thread.Sleep(10);
            Assert.True(inProcess.Writes.Count >= before + 100, "the guest stopped writing after the tracker left");
            vm.Memory.Write(Page + 0x2000, [1, 0, 0, 0]);
            Assert.True(vm.WaitForExit(TimeSpan.FromSeconds(20), out var outcome));
            Assert.Equal(VmOutcome.GuestExit(0), outcome);
        }
        finally
        {
            vm.Stop("test over");
            tracker.Dispose();
        }
    }

    [KvmGccFact]
    public void The_socket_is_private_and_other_users_are_refused_by_their_credentials()
    {
        string socket = SocketPath();
        using var vm = MemfdVm(a => TestGuest.ExitWith(a, 0));
        using var server = RemoteTrackerServer.Start(vm, socket, log: output.WriteLine);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(socket) & (UnixFileMode)0x1FF);
        // Open the file to everyone, so only SO_PEERCRED stands between uid 65534 and the VM.
        File.SetUnixFileMode(socket, (UnixFileMode)0x1B6);
        using var stranger = TrackerProcess.CAsUser(65534, socket, Gfn, 1);
        Assert.Equal(1, stranger.WaitForExit(Exit));
        Assert.Contains("uid 65534 may not track this VM", stranger.StandardError);
        Assert.Equal(0, server.Attached);
        Assert.Equal(0, vm.PageTracker.Count(Gfn));
    }

    [KvmFact]
    public void Anonymous_guest_ram_is_refused_with_the_fix()
    {
        using var vm = TestGuest.Create(TestGuest.LongMode(a => TestGuest.ExitWith(a, 0)));
        var refused = Assert.Throws<InvalidOperationException>(() => RemoteTrackerServer.Start(vm, SocketPath()));
        Assert.Contains("--memfd", refused.Message);
    }
}
