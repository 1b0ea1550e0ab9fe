using Iced.Intel;
using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.Regions;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Vcpus;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Memslots;

/// <summary>
/// Ports of the kernel's tools/testing/selftests/kvm/set_memory_region_test.c onto KvmSharp's API,
/// on the real /dev/kvm.
/// </summary>
public sealed class SetMemoryRegionTests
{
    private const ulong Magic = 0x1234_5678_9ABC_DEF0;
    private const ulong Sentinel = 0xDEAD_BEEF_0BAD_F00D;
    private const ulong RegionGpa = 0x0C00_0000;
    private const ulong MovedGpa = 0x0D00_0000;
    private const ulong RegionSize = 2UL << 20;
    private const ushort RegionSlot = 5;
    private const ushort SignalPortNumber = 0xE0;

    [KvmFact]
    public void Moving_a_slot_under_a_spinning_guest_and_back_keeps_it_reading_valid_data()
    {
        // The guest reads the slot in a loop; while the slot is moved away its reads exit as MMIO
        // and get the same value from a device, as the selftest's vCPU worker expects.
        var image = TestGuest.LongMode(a =>
        {
            var loop = a.CreateLabel();
            var fail = a.CreateLabel();
            a.mov(rbx, RegionGpa);
            a.mov(r8, Magic);
            a.mov(ecx, 3000);
            Signal(a, 1);
            a.Label(ref loop);
            a.mov(rax, __qword_ptr[rbx]);
            a.cmp(rax, r8);
            a.jne(fail);
            a.dec(ecx);
            a.jnz(loop);
            TestGuest.ExitWith(a, 0);
            a.Label(ref fail);
            TestGuest.ExitWith(a, 1);
        });
        using var vm = TestGuest.Create(image, memory: 4UL << 20);
        using var region = FilledRegion(Magic);
        var signals = new SignalPort();
        var stand_in = new ConstantReadDevice(Magic);
        vm.PortBus.Register(SignalPortNumber, 1, signals, "signal");
        vm.MmioBus.Register(RegionGpa, RegionSize, stand_in, "stand-in");
        vm.Memslots.Apply(MemslotRequest.Create(RegionSlot, RegionGpa, RegionSize, region.HostAddress));

        vm.Start();
        Assert.True(signals.WaitFor(1, TimeSpan.FromSeconds(10)), "guest did not start");
        var moved = vm.Memslots.Apply(MemslotRequest.Create(RegionSlot, MovedGpa, RegionSize, region.HostAddress));
        Assert.Equal(MemslotChangeKind.Move, moved.Kind);
        Assert.True(vm.Memslots.Current.TryFindByGfn(0, MovedGpa >> 12, out _));
        Assert.False(vm.Memslots.Current.TryFindByGfn(0, RegionGpa >> 12, out _));
        // Let the guest read the region while it is away (a fixed sleep was too short for a vCPU on a loaded host).
        Assert.True(SpinWait.SpinUntil(() => stand_in.Reads > 0, TimeSpan.FromSeconds(10)), "the guest never read the region while it was moved away");
        var back = vm.Memslots.Apply(MemslotRequest.Create(RegionSlot, RegionGpa, RegionSize, region.HostAddress));
        Assert.Equal(MemslotChangeKind.Move, back.Kind);

        Assert.True(vm.WaitForExit(TimeSpan.FromSeconds(30), out var outcome));
        Assert.Equal(VmOutcome.GuestExit(0), outcome);
        Assert.True(stand_in.Reads > 0, "the guest never read the region while it was moved away");
    }

    [KvmFact]
    public void Deleting_a_slot_while_the_guest_reads_it_then_recreating_it()
    {
        var image = TestGuest.LongMode(a =>
        {
            var waitGone = a.CreateLabel();
            var waitBack = a.CreateLabel();
            a.mov(rbx, RegionGpa);
            a.mov(r8, Magic);
            Signal(a, 1);
            a.Label(ref waitGone); // read until the slot is gone and the MMIO stand-in answers
            a.mov(rax, __qword_ptr[rbx]);
            a.cmp(rax, r8);
            a.je(waitGone);
            Signal(a, 2);
            a.Label(ref waitBack); // read until the re-created slot is back
            a.mov(rax, __qword_ptr[rbx]);
            a.cmp(rax, r8);
            a.jne(waitBack);
            TestGuest.ExitWith(a, 0);
        });
        using var vm = TestGuest.Create(image, memory: 4UL << 20);
        using var region = FilledRegion(Magic);
        var signals = new SignalPort();
        var stand_in = new ConstantReadDevice(Sentinel);
        vm.PortBus.Register(SignalPortNumber, 1, signals, "signal");
        vm.MmioBus.Register(RegionGpa, RegionSize, stand_in, "stand-in");
        vm.Memslots.Apply(MemslotRequest.Create(RegionSlot, RegionGpa, RegionSize, region.HostAddress));

        vm.Start();
        Assert.True(signals.WaitFor(1, TimeSpan.FromSeconds(10)), "guest did not start");
        Assert.Equal(MemslotChangeKind.Delete, vm.Memslots.Apply(MemslotRequest.Delete(RegionSlot)).Kind);
        Assert.True(signals.WaitFor(2, TimeSpan.FromSeconds(10)), "guest never saw the deletion");
        Assert.Equal(MemslotChangeKind.Create, vm.Memslots.Apply(MemslotRequest.Create(RegionSlot, RegionGpa, RegionSize, region.HostAddress)).Kind);

        Assert.True(vm.WaitForExit(TimeSpan.FromSeconds(30), out var outcome));
        Assert.Equal(VmOutcome.GuestExit(0), outcome);
    }

    [KvmFact]
    public void As_many_slots_as_KVM_CAP_NR_MEMSLOTS_then_one_more_is_refused()
    {
        using var system = KvmSystem.Open();
        using var vm = system.CreateVm();
        var table = new MemslotTable(MemslotLimitsProbe.Read(vm), new KvmMemslotBackend(vm));
        int limit = vm.CheckExtension(KvmCap.KVM_CAP_NR_MEMSLOTS);
        Assert.True(limit > 0);
        using var page = GuestMemoryRegion.CreateAnonymous(4096, "shared-page");

        for (int id = 0; id < limit; id++)
            table.Apply(MemslotRequest.Create((ushort)id, (ulong)id * 0x2000, 4096, page.HostAddress));
        Assert.Equal(limit, table.Current.Count(0));

        var before = table.Current;
        var refused = Assert.Throws<MemslotRefusedException>(() =>
            table.Apply(MemslotRequest.Create((ushort)limit, (ulong)limit * 0x2000, 4096, page.HostAddress)));
        Assert.Equal(Errno.EINVAL, refused.Errno);
        Assert.Contains("KVM_CAP_NR_MEMSLOTS", refused.Message);
        Assert.Same(before, table.Current);
        // The kernel agrees with the model's refusal.
        var direct = MemslotRequest.Create((ushort)limit, (ulong)limit * 0x2000, 4096, page.HostAddress).ToKernel();
        Assert.Equal(-Errno.EINVAL, vm.TrySetUserMemoryRegion(direct));
    }

    [KvmFact]
    public void Every_invalid_flag_bit_is_refused_by_model_and_kernel()
    {
        using var system = KvmSystem.Open();
        using var vm = system.CreateVm();
        var table = new MemslotTable(MemslotLimitsProbe.Read(vm), new KvmMemslotBackend(vm));
        using var page = GuestMemoryRegion.CreateAnonymous(4096, "page");
        int refusedBits = 0;
        for (int bit = 0; bit < 32; bit++)
        {
            uint flag = 1u << bit;
            var request = MemslotRequest.Create(1, 0x10000, 4096, page.HostAddress, flag);
            bool valid = (flag & table.Limits.ValidFlags) != 0;
            var verdict = table.TryApply(request);
            int kernel = valid ? 0 : vm.TrySetUserMemoryRegion(request.ToKernel());
            if (valid)
            {
                Assert.True(verdict.Accepted, $"flag bit {bit} should be accepted: {verdict.Reason}");
                table.Apply(MemslotRequest.Delete(1));
                continue;
            }
            refusedBits++;
            Assert.Equal(Errno.EINVAL, verdict.Errno);
            Assert.Equal(-Errno.EINVAL, kernel);
            Assert.Equal(0, table.Current.Count(0));
        }
        Assert.Equal(30, refusedBits);
    }

    [KvmFact]
    public void Overlapping_slots_are_refused_with_EEXIST_by_model_and_kernel()
    {
        using var system = KvmSystem.Open();
        using var vm = system.CreateVm();
        var table = new MemslotTable(MemslotLimitsProbe.Read(vm), new KvmMemslotBackend(vm));
        using var region = GuestMemoryRegion.CreateAnonymous(0x4000, "region");
        table.Apply(MemslotRequest.Create(0, 0x10000, 0x4000, region.HostAddress));

        foreach (ulong gpa in new ulong[] { 0x10000, 0xE000, 0x13000, 0x11000 })
        {
            var request = MemslotRequest.Create(1, gpa, 0x4000, region.HostAddress);
            var before = table.Current;
            var error = Assert.Throws<MemslotRefusedException>(() => table.Apply(request));
            Assert.Equal(Errno.EEXIST, error.Errno);
            Assert.False(error.RefusedByKernel);
            Assert.Same(before, table.Current);
            Assert.Equal(-Errno.EEXIST, vm.TrySetUserMemoryRegion(request.ToKernel()));
        }
        // Adjacent on either side is fine.
        table.Apply(MemslotRequest.Create(1, 0xC000, 0x4000, region.HostAddress));
        table.Apply(MemslotRequest.Create(2, 0x14000, 0x4000, region.HostAddress));
        Assert.Equal(3, table.Current.Count(0));
    }

    [KvmFact]
    public unsafe void A_vm_with_no_memslots_ends_in_an_internal_error_exit_that_is_reported()
    {
        using var system = KvmSystem.Open();
        using var vm = system.CreateVm();
        var dispatcher = new ExitDispatcher(new Devices.Bus.DeviceBus("pio"), new Devices.Bus.DeviceBus("mmio"));
        string? reason = null;
        using var runner = new VcpuRunner(vm, 0, dispatcher, _ => { }, (vcpu, why) => reason = why);
        runner.Start();
        Assert.True(runner.WaitForEnd(TimeSpan.FromSeconds(20)), "the vCPU did not stop");
        Assert.Equal(VcpuState.Faulted, runner.State);
        if (KvmAvailability.Facts!.EmulatesGuestKernelMode)
        {
            // kvm_pvm cannot set up a vCPU without memory and fails KVM_RUN itself (measured: ENOSPC);
            // KvmSharp must still end the vCPU with a report naming the ioctl and errno.
            Assert.Null(reason);
            Assert.Contains("KVM_RUN failed: ENOSPC", runner.FaultReport);
        }
        else
        {
            Assert.True(reason is not null, $"no exit report; error: {runner.Error}");
            Assert.Contains("KVM_EXIT_INTERNAL_ERROR", reason);
        }
    }

    private static GuestMemoryRegion FilledRegion(ulong value)
    {
        var region = GuestMemoryRegion.CreateAnonymous(RegionSize, "test-region");
        var qwords = new ulong[RegionSize / 8];
        Array.Fill(qwords, value);
        region.Write(0, System.Runtime.InteropServices.MemoryMarshal.AsBytes(qwords.AsSpan()));
        return region;
    }

    private static void Signal(Assembler a, byte value)
    {
        a.mov(al, value);
        a.@out((byte)SignalPortNumber, al);
    }
}
