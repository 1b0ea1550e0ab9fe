using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Memory.Regions;
using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;

namespace KvmSharp.Tests.Integration.Memslots;

/// <summary>
/// Address space 1 (SMM) on a KVM that has it: the nested testbed's SVM KVM, not this project's
/// usual host (which reports KVM_CAP_X86_SMM=0, so these skip there with that reason).
/// </summary>
public sealed class SmmAddressSpaceTests
{
    [KvmFact(Requires = KvmCap.KVM_CAP_MULTI_ADDRESS_SPACE, MinimumValue = 2)]
    public void Smm_slots_live_in_address_space_1_and_never_conflict_with_address_space_0()
    {
        using var system = KvmSystem.Open();
        using var vm = system.CreateVm();
        var limits = MemslotLimitsProbe.Read(vm);
        Assert.Equal(2, limits.AddressSpaces);
        var table = new MemslotTable(limits, new KvmMemslotBackend(vm));
        using var ram = GuestMemoryRegion.CreateAnonymous(0x10000, "ram");
        using var smram = GuestMemoryRegion.CreateAnonymous(0x10000, "smram");

        table.Apply(MemslotRequest.Create(0, 0x30000, 0x10000, ram.HostAddress));
        // The same guest range in SMM: a different address space, so no EEXIST.
        var created = table.Apply(MemslotRequest.Create(0, 0x30000, 0x10000, smram.HostAddress, addressSpace: 1));
        Assert.Equal(MemslotChangeKind.Create, created.Kind);
        Assert.True(table.Current.TryFindByGfn(1, 0x30, out var smm));
        Assert.Equal(smram.HostAddress, smm.HostAddress);

        // Inside address space 1 the usual rules hold, with the kernel's errno.
        var overlap = Assert.Throws<MemslotRefusedException>(() => table.Apply(MemslotRequest.Create(1, 0x38000, 0x1000, smram.HostAddress, addressSpace: 1)));
        Assert.Equal(Errno.EEXIST, overlap.Errno);
        Assert.Equal(-Errno.EEXIST, vm.TrySetUserMemoryRegion(MemslotRequest.Create(1, 0x38000, 0x1000, smram.HostAddress, addressSpace: 1).ToKernel()));
        var outOfRange = Assert.Throws<MemslotRefusedException>(() => table.Apply(MemslotRequest.Create(2, 0x90000, 0x1000, smram.HostAddress, addressSpace: 2)));
        Assert.Equal(Errno.EINVAL, outOfRange.Errno);

        Assert.Equal(MemslotChangeKind.Delete, table.Apply(MemslotRequest.Delete(0, addressSpace: 1)).Kind);
        Assert.True(table.Current.TryFindByGfn(0, 0x30, out _));
        Assert.False(table.Current.TryFindByGfn(1, 0x30, out _));
    }

    [KvmFact(Requires = KvmCap.KVM_CAP_MULTI_ADDRESS_SPACE, MinimumValue = 2)]
    public void A_tracked_gfn_is_carved_read_only_in_both_address_spaces_on_the_real_kernel()
    {
        using var system = KvmSystem.Open();
        using var vm = system.CreateVm();
        var limits = MemslotLimitsProbe.Read(vm);
        var carved = new CarvedMemslotBackend(new KvmMemslotBackend(vm), limits);
        var table = new MemslotTable(limits, carved);
        var tracker = new PageTracker(table, carved, new NoVcpuQuiescer(), new PageTrackOptions { DefaultMode = TrackingMode.TrapWrites }); // checks read-only carves
        using var ram = GuestMemoryRegion.CreateAnonymous(0x10000, "ram");
        using var smram = GuestMemoryRegion.CreateAnonymous(0x10000, "smram");
        table.Apply(MemslotRequest.Create(0, 0x30000, 0x10000, ram.HostAddress));
        table.Apply(MemslotRequest.Create(0, 0x30000, 0x10000, smram.HostAddress, addressSpace: 1));

        tracker.AddGfn(0x34);

        foreach (ushort space in new ushort[] { 0, 1 })
        {
            var pieces = carved.PiecesOf(0, space);
            Assert.Equal(3, pieces.Count);
            var readOnly = Assert.Single(pieces, p => p.IsTrackedCarve);
            Assert.Equal(0x34000UL, readOnly.GuestPhysAddr);
            Assert.Equal(space, readOnly.AddressSpace);
            // The kernel really holds that piece: re-applying it unchanged is a no-op it accepts.
            Assert.Equal(0, vm.TrySetUserMemoryRegion(readOnly.ToKernel()));
        }
        Assert.Equal(1, tracker.Count(0x34, 0));
        Assert.Equal(1, tracker.Count(0x34, 1));

        tracker.RemoveGfn(0x34);
        Assert.Single(carved.PiecesOf(0, 0));
        Assert.Single(carved.PiecesOf(0, 1));
    }
}
