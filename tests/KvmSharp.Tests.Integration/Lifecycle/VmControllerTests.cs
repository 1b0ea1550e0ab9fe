using System.Diagnostics;
using Iced.Intel;
using KvmSharp.Kvm.Interop;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Lifecycle;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Vcpus;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Lifecycle;

/// <summary>The VM controller on the real /dev/kvm: states, leases, events, progress and pauses that land during I/O.</summary>
public sealed class VmControllerTests
{
    private const ulong CounterAddress = 0x200000;
    private const ushort BlockingPort = 0xE8;
    private const ulong BlockingMmio = 0xD000_0000;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    // Spins incrementing a counter in memory after an optional first instruction sequence.
    private static GuestImage Guest(Action<Assembler>? first = null) => TestGuest.LongMode(a =>
    {
        first?.Invoke(a);
        var loop = a.CreateLabel();
        a.mov(rbx, CounterAddress);
        a.Label(ref loop);
        a.inc(__qword_ptr[rbx]);
        a.jmp(loop);
    });

    private static ulong Counter(VirtualMachine vm) => vm.Memory.ReadUInt64(CounterAddress);

    private static void WaitForProgress(VirtualMachine vm)
    {
        ulong start = Counter(vm);
        var clock = Stopwatch.StartNew();
        while (Counter(vm) == start)
        {
            Assert.True(clock.Elapsed < Bound, "the guest made no progress");
            Thread.Sleep(1);
        }
    }

    [KvmFact]
    public async Task Start_pause_resume_and_stop_drive_the_guest_and_raise_events_in_order()
    {
        using var controller = new VmController(TestGuest.Create(Guest(), memory: 4UL << 20), "ctl-1");
        var vm = controller.Machine;
        var events = new List<VmEvent>();
        using var subscription = controller.Subscribe(e => { lock (events) events.Add(e); });
        Assert.Equal(VmState.Created, controller.State);

        await controller.StartAsync().WaitAsync(Bound);
        Assert.Equal(VmState.Running, controller.State);
        WaitForProgress(vm);

        var lease = await controller.PauseAsync("api").WaitAsync(Bound);
        Assert.Equal(VmState.Paused, controller.State);
        Assert.Equal(VcpuState.Paused, vm.Vcpus[0].State);
        ulong frozen = Counter(vm);
        Thread.Sleep(50);
        Assert.Equal(frozen, Counter(vm));

        await Task.Run(lease.Dispose).WaitAsync(Bound);
        Assert.Equal(VmState.Running, controller.State);
        WaitForProgress(vm);

        await controller.StopAsync("test over").WaitAsync(Bound);
        Assert.Equal(VmState.Stopped, controller.State);
        var outcome = await controller.Completion.WaitAsync(Bound);
        Assert.Equal(VmExitKind.Stopped, outcome.Kind);
        Assert.True(vm.Vcpus[0].HasEnded);

        var deadline = DateTime.UtcNow + Bound;
        while (true)
        {
            lock (events)
                if (events.Count >= 4) break;
            Assert.True(DateTime.UtcNow < deadline, "events missing");
            Thread.Sleep(5);
        }
        lock (events)
        {
            Assert.Equal([VmEventKind.Started, VmEventKind.Paused, VmEventKind.Resumed, VmEventKind.Shutdown], events.Select(e => e.Kind));
            Assert.Equal([1L, 2L, 3L, 4L], events.Select(e => e.Sequence));
            Assert.Contains("test over", events[3].Detail);
        }
    }

    [KvmFact]
    public async Task An_api_resume_leaves_the_guest_frozen_while_a_carve_holds_its_lease()
    {
        using var controller = new VmController(TestGuest.Create(Guest(), memory: 4UL << 20));
        var vm = controller.Machine;
        await controller.StartAsync().WaitAsync(Bound);
        WaitForProgress(vm);

        var carve = vm.Pause("page-track carve", Bound);
        var api = await controller.PauseAsync("api").WaitAsync(Bound);
        await Task.Run(api.Dispose).WaitAsync(Bound);
        Assert.Equal(VmState.Running, controller.State);
        ulong frozen = Counter(vm);
        Thread.Sleep(50);
        Assert.Equal(frozen, Counter(vm));
        Assert.Equal(1, vm.Vcpus[0].PauseDepth);

        carve.Dispose();
        WaitForProgress(vm);
        Assert.Equal(0, vm.Vcpus[0].PauseDepth);
    }

    [KvmFact]
    public async Task A_guest_that_exits_on_its_own_ends_stopped_with_a_shutdown_event()
    {
        using var controller = new VmController(TestGuest.Create(TestGuest.LongMode(a => TestGuest.ExitWith(a, 7)), memory: 4UL << 20));
        var seen = new List<string>();
        using var subscription = controller.Subscribe(e => { lock (seen) seen.Add(e.Kind); });
        await controller.StartAsync().WaitAsync(Bound);
        var outcome = await controller.Completion.WaitAsync(Bound);
        Assert.Equal(VmExitKind.GuestExit, outcome.Kind);
        Assert.Equal(7, outcome.ExitCode);
        Assert.Equal(VmState.Stopped, controller.State);
        await Assert.ThrowsAsync<VmTransitionException>(() => controller.PauseAsync("api").WaitAsync(Bound));
    }

    public static TheoryData<string> Reads => new() { "port", "mmio" };

    /// <summary>
    /// A pause that lands while the vCPU is in the handler of a read parks it only once KVM has completed the
    /// read: the paused vCPU already holds the value and points past the instruction (without completion it
    /// would still point at the instruction, its destination unwritten).
    /// </summary>
    [KvmTheory]
    [MemberData(nameof(Reads))]
    public async Task A_pause_during_a_read_parks_the_vcpu_with_the_read_completed(string bus)
    {
        const uint Value = 0x5A5A_1234;
        var device = new BlockingDevice(Value);
        void Read(Assembler a)
        {
            if (bus == "port")
            {
                a.mov(edx, BlockingPort);
                a.@in(eax, dx);
            }
            else
            {
                a.mov(rsi, BlockingMmio);
                a.mov(eax, __dword_ptr[rsi]);
            }
        }
        ulong afterRead = TestGuest.CodeAddress + (ulong)TestGuest.LongMode(Read).Bytes.Length;
        using var controller = new VmController(TestGuest.Create(Guest(Read), memory: 4UL << 20));
        var vm = controller.Machine;
        if (bus == "port") vm.PortBus.Register(BlockingPort, 4, device, "blocking");
        else vm.MmioBus.Register(BlockingMmio, 0x1000, device, "blocking");
        try
        {
            await controller.StartAsync().WaitAsync(Bound);
            Assert.True(device.WaitEntered(Bound), "the guest never read the device");
            var pausing = controller.PauseAsync("api");
            Thread.Sleep(50); // the pause is asked and kicked while the vCPU is in the handler
            Assert.False(pausing.IsCompleted, "the pause completed while the vCPU was still in its handler");
            device.Release();
            using var lease = await pausing.WaitAsync(Bound);

            var regs = vm.Vcpus[0].Vcpu!.GetRegisters();
            Assert.Equal(Value, (uint)regs.rax);
            Assert.Equal(afterRead, regs.rip);
            Assert.Equal(1, device.Accesses);
            Assert.Equal(0UL, Counter(vm)); // parked right after the read: the loop has not run
        }
        finally
        {
            device.Release();
        }
        WaitForProgress(vm);
        Assert.Equal(1, device.Accesses); // resuming did not repeat the read
    }

    [KvmFact]
    public async Task A_vcpu_wedged_in_a_device_handler_is_reported_stalled_until_it_returns()
    {
        var device = new BlockingDevice(1);
        using var controller = new VmController(TestGuest.Create(Guest(a =>
        {
            a.mov(edx, BlockingPort);
            a.@in(eax, dx);
        }), memory: 4UL << 20));
        var vm = controller.Machine;
        vm.PortBus.Register(BlockingPort, 4, device, "blocking");
        try
        {
            await controller.StartAsync().WaitAsync(Bound);
            Assert.True(device.WaitEntered(Bound));
            Thread.Sleep(300);
            var progress = controller.CheckProgress(TimeSpan.FromMilliseconds(200));
            Assert.False(progress.IsHealthy);
            Assert.Contains(progress.Stalled, s => s.Contains("vCPU 0") && s.Contains(nameof(KvmExitReason.KVM_EXIT_IO)));
        }
        finally
        {
            device.Release();
        }
        WaitForProgress(vm);
        Assert.True(controller.CheckProgress(TimeSpan.FromMilliseconds(200)).IsHealthy); // in KVM_RUN: fine
        using (await controller.PauseAsync("api").WaitAsync(Bound))
        {
            Thread.Sleep(300);
            Assert.True(controller.CheckProgress(TimeSpan.FromMilliseconds(200)).IsHealthy); // parked: fine
        }
    }
}
