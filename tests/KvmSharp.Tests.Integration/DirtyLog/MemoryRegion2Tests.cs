using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Regions;
using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;

namespace KvmSharp.Tests.Integration.DirtyLog;

/// <summary>
/// KVM_SET_USER_MEMORY_REGION2 where KVM_CAP_USER_MEMORY2 exists: the same verdicts as the old ioctl.
/// Its struct is also proven by the ioctl number itself: the kernel refuses (ENOTTY) a number whose
/// encoded size differs from its struct's.
/// </summary>
public sealed class MemoryRegion2Tests
{
    [KvmFact(Requires = KvmCap.KVM_CAP_USER_MEMORY2)]
    public void Region2_is_used_where_offered_and_gives_the_old_ioctls_verdicts()
    {
        using var system = KvmSystem.Open();
        using var region2Vm = system.CreateVm();
        using var region1Vm = system.CreateVm();
        using var memory = GuestMemoryRegion.CreateAnonymous(16 * 4096, "region2");
        Assert.True(region2Vm.UsesMemoryRegion2);

        ulong hva = memory.HostAddress;
        kvm_userspace_memory_region[] requests =
        [
            new() { slot = 1, guest_phys_addr = 0x10000, memory_size = 8 * 4096, userspace_addr = hva },                         // create
            new() { slot = 2, guest_phys_addr = 0x12000, memory_size = 4096, userspace_addr = hva },                              // overlaps: EEXIST
            new() { slot = 3, guest_phys_addr = 0x40000, memory_size = 4095, userspace_addr = hva },                              // unaligned size: EINVAL
            new() { slot = 4, flags = 1u << 7, guest_phys_addr = 0x40000, memory_size = 4096, userspace_addr = hva },             // unknown flag: EINVAL
            new() { slot = 1, flags = KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr = 0x10000, memory_size = 8 * 4096, userspace_addr = hva }, // flags
            new() { slot = 1, flags = KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr = 0x20000, memory_size = 8 * 4096, userspace_addr = hva }, // move
            new() { slot = 1, guest_phys_addr = 0x20000, memory_size = 4 * 4096, userspace_addr = hva },                         // resize: EINVAL
            new() { slot = 1 },                                                                                                   // delete
            new() { slot = 1 },                                                                                                   // delete again: EINVAL
        ];
        var verdicts2 = requests.Select(r => region2Vm.TrySetUserMemoryRegion2(r)).ToList();
        var verdicts1 = requests.Select(r => region1Vm.TrySetUserMemoryRegion1(r)).ToList();
        Assert.Equal(verdicts1, verdicts2);
        Assert.Equal([0, -Errno.EEXIST, -Errno.EINVAL, -Errno.EINVAL, 0, 0, -Errno.EINVAL, 0, -Errno.EINVAL], verdicts2);
        // The everyday entry point goes through REGION2 here.
        Assert.Equal(0, region2Vm.TrySetUserMemoryRegion(requests[0]));
        Assert.Equal(-Errno.EEXIST, region2Vm.TrySetUserMemoryRegion2(requests[1]));
    }

    // KVM_MEM_GUEST_MEMFD (bit 2) passes REGION2's early flag check (the guest_memfd is checked after the
    // overlap check), so one request got EEXIST there and EINVAL from the old ioctl: the memslot
    // differential found it. The everyday entry point keeps the old ioctl's verdict for such flags.
    [KvmFact(Requires = KvmCap.KVM_CAP_USER_MEMORY2)]
    public void A_guest_memfd_flag_gets_the_old_ioctls_verdict_through_the_everyday_entry_point()
    {
        using var system = KvmSystem.Open();
        using var vm = system.CreateVm();
        using var memory = GuestMemoryRegion.CreateAnonymous(16 * 4096, "region2-gmem");
        ulong hva = memory.HostAddress;
        const uint GuestMemfd = 1u << 2;
        Assert.Equal(0, vm.TrySetUserMemoryRegion(new() { slot = 5, guest_phys_addr = 0x12000, memory_size = 3 * 4096, userspace_addr = hva }));
        var overlapping = new kvm_userspace_memory_region { slot = 60, flags = GuestMemfd, guest_phys_addr = 0x11000, memory_size = 4 * 4096, userspace_addr = hva };
        int viaRegion2 = vm.TrySetUserMemoryRegion2(overlapping);
        int viaOld = vm.TrySetUserMemoryRegion1(overlapping);
        Assert.Equal(-Errno.EINVAL, viaOld);
        Assert.Equal(viaOld, vm.TrySetUserMemoryRegion(overlapping));
        // Kernels with guest_memfd for ordinary VMs (6.18 here) check the overlap first through REGION2.
        Assert.True(viaRegion2 is -Errno.EEXIST or -Errno.EINVAL, $"REGION2 said {viaRegion2}");
    }
}
