using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Vmm.Boot;

/// <summary>KVM_SET_CPUID2 from KVM_GET_SUPPORTED_CPUID, with this vCPU's APIC id patched in.</summary>
public static class CpuidSetup
{
    private const uint HypervisorPresent = 1u << 31;

    public static void Apply(KvmVcpu vcpu, kvm_cpuid_entry2[] supported)
    {
        var entries = (kvm_cpuid_entry2[])supported.Clone();
        uint apicId = (uint)vcpu.Id;
        for (int i = 0; i < entries.Length; i++)
        {
            ref var entry = ref entries[i];
            switch (entry.function)
            {
                case 1:
                    entry.ebx = (entry.ebx & 0x00FFFFFF) | (apicId << 24);
                    // KVM does not report the "running on a hypervisor" bit; without it Linux never
                    // looks at the KVM leaves (0x40000000), so no kvm-clock and no paravirt features.
                    entry.ecx |= HypervisorPresent;
                    break;
                case 0xB:
                case 0x1F:
                    entry.edx = apicId;
                    break;
            }
        }
        vcpu.SetCpuid(entries);
    }
}
