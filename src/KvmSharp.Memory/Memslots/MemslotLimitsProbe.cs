using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Memory.Memslots;

/// <summary>Reads the memslot limits of a VM from its capabilities, and probes the highest mappable gfn.</summary>
public static class MemslotLimitsProbe
{
    public static MemslotLimits Read(KvmVm vm)
    {
        int addressSpaces = Math.Max(1, vm.CheckExtension(KvmCap.KVM_CAP_MULTI_ADDRESS_SPACE));
        uint flags = KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES;
        if (vm.CheckExtension(KvmCap.KVM_CAP_READONLY_MEM) > 0) flags |= KvmMemFlags.KVM_MEM_READONLY;
        int slots = vm.CheckExtension(KvmCap.KVM_CAP_NR_MEMSLOTS);
        return new MemslotLimits
        {
            SlotsPerAddressSpace = slots > 0 ? slots : 32764,
            AddressSpaces = addressSpaces,
            SmmSupported = vm.CheckExtension(KvmCap.KVM_CAP_X86_SMM) > 0,
            ValidFlags = flags,
            MaxGfn = ProbeMaxGfn(vm.System),
            UserAddressLimit = UserAddressLimit(),
        };
    }

    /// <summary>
    /// kvm_mmu_max_gfn depends on the host MMU mode (TDP: host MAXPHYADDR; shadow: 52 bits). Rather
    /// than guess, ask a scratch VM: the highest bit count whose top page it accepts.
    /// </summary>
    private static ulong ProbeMaxGfn(KvmSystem system)
    {
        using var scratch = system.CreateVm();
        const ulong hostAddress = 0x10000000;
        int low = 32, high = 57;
        while (low < high)
        {
            int bits = (low + high + 1) / 2;
            var region = new kvm_userspace_memory_region { slot = 0, guest_phys_addr = (1UL << bits) - 4096, memory_size = 4096, userspace_addr = hostAddress };
            if (scratch.TrySetUserMemoryRegion(region) == 0)
            {
                scratch.TrySetUserMemoryRegion(region with { memory_size = 0 });
                low = bits;
            }
            else
            {
                high = bits - 1;
            }
        }
        return (1UL << (low - Memslot.PageShift)) - 1;
    }

    /// <summary>TASK_SIZE_MAX: 56-bit user space with 5-level paging (la57), otherwise 47-bit.</summary>
    private static ulong UserAddressLimit()
    {
        bool la57 = File.Exists("/proc/cpuinfo") && File.ReadLines("/proc/cpuinfo")
            .Any(line => line.StartsWith("flags", StringComparison.Ordinal) && line.Contains(" la57", StringComparison.Ordinal));
        return (1UL << (la57 ? 56 : 47)) - 4096;
    }
}
