using System.Diagnostics;
using KvmSharp.Kvm.Interop;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Lifecycle;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Lifecycle;

/// <summary>Teardown never pulls memory from under a running vCPU thread; a controller pause tells the guest's kvmclock.</summary>
public sealed class TeardownAndClockTests
{
    private const ushort BlockingPort = 0xE8;
    private const ulong CounterAddress = 0x200000;
    private const ulong ClockPage = 0x210000;
    private const uint MsrKvmSystemTimeNew = 0x4b56_4d01;
    private const byte PvclockGuestStopped = 2;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Disposing a VM whose vCPU thread is inside a device handler returns (bounded) and leaves that thread its
    /// kvm_run mapping, fd and guest memory; when the handler returns, the thread writes its result into kvm_run
    /// (an unmapped page would kill the process here), leaves, and the rest is released then.
    /// </summary>
    [KvmFact]
    public void Disposing_the_vm_under_a_vcpu_stuck_in_a_device_releases_its_memory_only_after_the_thread_leaves()
    {
        var device = new BlockingDevice(0x1234);
        var vm = TestGuest.Create(TestGuest.LongMode(a =>
        {
            var loop = a.CreateLabel();
            a.mov(edx, BlockingPort);
            a.@in(eax, dx);
            a.Label(ref loop);
            a.jmp(loop);
        }), memory: 4UL << 20);
        vm.DisposeGrace = TimeSpan.FromMilliseconds(200);
        vm.PortBus.Register(BlockingPort, 4, device, "blocking");
        vm.Start();
        Assert.True(device.WaitEntered(Bound));
        var runner = vm.Vcpus[0];
        try
        {
            var clock = Stopwatch.StartNew();
            vm.Dispose();
            Assert.True(clock.Elapsed < Bound, "Dispose waited for the stuck thread");
            Assert.False(runner.HasEnded);
            Assert.False(runner.IsReleased, "the vCPU's kvm_run was released under its running thread");
            Assert.False(vm.ResourcesReleased, "guest memory and devices were released under a running vCPU thread");
        }
        finally
        {
            device.Release();
        }
        Assert.True(runner.WaitForEnd(Bound), "the vCPU thread did not leave once its handler returned");
        var deadline = Stopwatch.StartNew();
        while (!(runner.IsReleased && vm.ResourcesReleased))
        {
            Assert.True(deadline.Elapsed < Bound, $"not released after the thread left: vCPU {runner.IsReleased}, VM {vm.ResourcesReleased}");
            Thread.Sleep(5);
        }
        Assert.Null(runner.Error);
    }

    [KvmFact]
    public void Disposing_a_vm_whose_vcpus_stop_releases_everything_at_once()
    {
        var vm = TestGuest.Create(TestGuest.LongMode(a =>
        {
            var loop = a.CreateLabel();
            a.Label(ref loop);
            a.jmp(loop);
        }), memory: 4UL << 20, cpus: 2);
        vm.Start();
        Assert.True(vm.Vcpus.All(v => v.WaitUntilReady(Bound)));
        vm.Dispose();
        Assert.True(vm.ResourcesReleased);
        Assert.All(vm.Vcpus, v => Assert.True(v.HasEnded && v.IsReleased));
    }

    /// <summary>The guest enables kvmclock; after a pause through the controller its clock page says PVCLOCK_GUEST_STOPPED.</summary>
    [KvmFact(Requires = KvmCap.KVM_CAP_KVMCLOCK_CTRL)]
    public async Task A_controller_pause_tells_a_kvmclock_guest_that_it_was_stopped()
    {
        using var controller = new VmController(TestGuest.Create(TestGuest.LongMode(a =>
        {
            var loop = a.CreateLabel();
            a.mov(ecx, MsrKvmSystemTimeNew);
            a.mov(eax, (uint)ClockPage | 1); // enable
            a.xor(edx, edx);
            a.wrmsr();
            a.mov(rbx, CounterAddress);
            a.Label(ref loop);
            a.inc(__qword_ptr[rbx]);
            a.jmp(loop);
        }), memory: 4UL << 20));
        var vm = controller.Machine;
        byte Flags() => (byte)(vm.Memory.ReadUInt64(ClockPage + 24) >> 40); // pvclock_vcpu_time_info.flags (byte 29)
        await controller.StartAsync().WaitAsync(Bound);
        WaitForProgress(vm);
        Assert.NotEqual(0UL, vm.Memory.ReadUInt64(ClockPage + 8)); // KVM filled the page (tsc_timestamp)
        Assert.Equal(0, Flags() & PvclockGuestStopped);

        var lease = await controller.PauseAsync("api").WaitAsync(Bound);
        await Task.Run(lease.Dispose).WaitAsync(Bound);
        WaitForProgress(vm); // the next entry updates the clock page
        Assert.Equal(PvclockGuestStopped, Flags() & PvclockGuestStopped);
    }

    private static void WaitForProgress(Vmm.Machine.VirtualMachine vm)
    {
        ulong start = vm.Memory.ReadUInt64(CounterAddress);
        var clock = Stopwatch.StartNew();
        while (vm.Memory.ReadUInt64(CounterAddress) == start)
        {
            Assert.True(clock.Elapsed < Bound, "the guest made no progress");
            Thread.Sleep(1);
        }
    }
}
