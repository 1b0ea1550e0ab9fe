using System.Diagnostics;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Vcpus;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Vcpus;

/// <summary>Pause, resume and stop reach a vCPU that never leaves KVM_RUN on its own.</summary>
public sealed class VcpuControlTests
{
    private const ulong CounterAddress = 0x200000;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(2);

    // The guest increments a counter in memory forever: no exits, so only a kick gets it out.
    private static VirtualMachine SpinningGuest(int cpus = 1) => TestGuest.Create(TestGuest.LongMode(a =>
    {
        var loop = a.CreateLabel();
        a.mov(rbx, CounterAddress);
        a.shl(rsi, 3); // one counter per vCPU
        a.add(rbx, rsi);
        a.Label(ref loop);
        a.inc(__qword_ptr[rbx]);
        a.jmp(loop);
    }), memory: 4UL << 20, cpus: cpus);

    private static ulong Counter(VirtualMachine vm, int vcpu = 0) => vm.Memory.ReadUInt64(CounterAddress + (ulong)vcpu * 8);

    private static void WaitForProgress(VirtualMachine vm, int vcpu = 0)
    {
        ulong start = Counter(vm, vcpu);
        var clock = Stopwatch.StartNew();
        while (Counter(vm, vcpu) == start)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), "the guest made no progress");
            Thread.Sleep(1);
        }
    }

    [KvmFact]
    public void Pause_resume_and_stop_complete_in_bounded_time_while_the_guest_spins()
    {
        using var vm = SpinningGuest();
        vm.Start();
        WaitForProgress(vm);
        var runner = vm.Vcpus[0];

        var clock = Stopwatch.StartNew();
        var lease = vm.Pause("test", Bound);
        Assert.True(clock.Elapsed < Bound);
        Assert.Equal(VcpuState.Paused, runner.State);
        ulong paused = Counter(vm);
        Thread.Sleep(50);
        Assert.Equal(paused, Counter(vm));

        lease.Dispose();
        WaitForProgress(vm);
        Assert.Equal(VcpuState.Running, runner.State);

        clock.Restart();
        Assert.True(runner.Stop(Bound), "stop did not complete");
        Assert.True(clock.Elapsed < Bound);
        Assert.Equal(VcpuState.Stopped, runner.State);
    }

    [KvmFact]
    public void Repeated_pauses_never_lose_a_kick()
    {
        using var vm = SpinningGuest();
        vm.Start();
        WaitForProgress(vm);
        var runner = vm.Vcpus[0];
        for (int i = 0; i < 200; i++)
        {
            Assert.True(vm.Pauses.TryPause("test", Bound, out var lease, out string? failure), $"pause {i} did not complete: {failure}");
            lease.Dispose();
        }
        WaitForProgress(vm);
        Assert.True(runner.Stop(Bound));
    }

    [KvmFact]
    public void Stopping_the_vm_stops_every_vcpu_and_reports_stopped()
    {
        using var vm = SpinningGuest(cpus: 2);
        vm.Start();
        WaitForProgress(vm, 0);
        WaitForProgress(vm, 1);
        vm.Pause("test", Bound).Dispose();
        vm.Stop("test");
        Assert.True(vm.WaitForExit(Bound, out var outcome));
        Assert.Equal(VmExitKind.Stopped, outcome!.Kind);
        Assert.All(vm.Vcpus, v => Assert.Equal(VcpuState.Stopped, v.State));
    }
}
