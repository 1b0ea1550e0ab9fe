using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Caps;

/// <summary>`kvmsharp caps`: the host's KVM facts a user needs before booting anything.</summary>
public static class CapsCommand
{
    private static readonly (KvmCap Cap, string Why)[] Explained =
    [
        (KvmCap.KVM_CAP_NR_VCPUS, "recommended vCPUs per VM"),
        (KvmCap.KVM_CAP_MAX_VCPUS, "maximum vCPUs per VM"),
        (KvmCap.KVM_CAP_NR_MEMSLOTS, "memslots per address space"),
        (KvmCap.KVM_CAP_MULTI_ADDRESS_SPACE, "memslot address spaces (2 = SMM has its own)"),
        (KvmCap.KVM_CAP_X86_SMM, "System Management Mode"),
        (KvmCap.KVM_CAP_READONLY_MEM, "read-only memslots (needed for write tracking)"),
        (KvmCap.KVM_CAP_IRQCHIP, "in-kernel interrupt controller"),
        (KvmCap.KVM_CAP_PIT2, "in-kernel PIT"),
        (KvmCap.KVM_CAP_IRQFD, "irqfd"),
        (KvmCap.KVM_CAP_IOEVENTFD, "ioeventfd"),
        (KvmCap.KVM_CAP_IMMEDIATE_EXIT, "kvm_run.immediate_exit (vCPU kick)"),
        (KvmCap.KVM_CAP_DIRTY_LOG_RING, "dirty ring size in bytes"),
        (KvmCap.KVM_CAP_DIRTY_LOG_RING_ACQ_REL, "dirty ring with acquire/release ordering (bytes)"),
        (KvmCap.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, "clear-log dirty logging (3 = manual protect + initially set)"),
        (KvmCap.KVM_CAP_USER_MEMORY2, "KVM_SET_USER_MEMORY_REGION2"),
        (KvmCap.KVM_CAP_COALESCED_MMIO, "coalesced MMIO"),
        (KvmCap.KVM_CAP_SET_TSS_ADDR, "KVM_SET_TSS_ADDR"),
        (KvmCap.KVM_CAP_INTERNAL_ERROR_DATA, "internal-error details"),
        (KvmCap.KVM_CAP_SYSTEM_EVENT_DATA, "system-event details"),
    ];

    public static int Run(string devicePath, TextWriter output, TextWriter error)
    {
        KvmHostFacts facts;
        try
        {
            using var system = KvmSystem.Open(devicePath);
            facts = KvmHostFacts.Read(system);
        }
        catch (KvmException e)
        {
            error.WriteLine($"kvmsharp: {e.Message}");
            return Program.HostFailure;
        }
        Print(facts, output);
        return 0;
    }

    public static void Print(KvmHostFacts facts, TextWriter output)
    {
        output.WriteLine($"device:            {facts.DevicePath}");
        output.WriteLine($"api version:       {facts.ApiVersion}");
        output.WriteLine($"vendor module:     {(facts.VendorModules.Count > 0 ? string.Join(", ", facts.VendorModules) : "unknown (none of kvm_intel, kvm_amd, kvm_pvm under /sys/module)")}");
        output.WriteLine($"smm:               {(facts.SmmSupported ? "yes" : "no")}");
        output.WriteLine($"address spaces:    {facts.AddressSpaces}{(facts.AddressSpaces > 1 ? " (as_id 1 = SMM)" : " (no SMM memslots)")}");
        output.WriteLine($"memslots:          {facts.MemslotsPerAddressSpace} per address space, shared by the user's slots and page tracking's read-only pieces (see --stats)");
        output.WriteLine($"guest kernel mode: {(facts.EmulatesGuestKernelMode ? "EMULATED" : "hardware")}");
        output.WriteLine("capabilities:");
        foreach (var (cap, why) in Explained)
            output.WriteLine($"  {cap,-30} {facts.Value(cap),10}  {why}");
        if (facts.EmulatesGuestKernelMode)
        {
            output.WriteLine();
            output.WriteLine("warning: this KVM (kvm_pvm) emulates guest kernel-mode (CPL0) code, roughly a million");
            output.WriteLine("         instructions per second: kernel-mode guests such as Linux will be very slow here.");
            output.WriteLine("         User-mode (CPL3) guest code runs at native speed.");
        }
    }
}
