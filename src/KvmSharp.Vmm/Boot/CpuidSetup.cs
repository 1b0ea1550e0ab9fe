using System.Numerics;
using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Vmm.Boot;

/// <summary>
/// KVM_SET_CPUID2 from KVM_GET_SUPPORTED_CPUID, per vCPU: its APIC id, the hypervisor bit, and a
/// topology of one package with one core per vCPU (one thread per core), described in the Intel
/// (leaves 1, 4, 0xB, 0x1F) and AMD (0x80000008) leaves alike. With an in-kernel LAPIC, also the
/// TSC-deadline timer, which KVM emulates but leaves out of KVM_GET_SUPPORTED_CPUID for userspace to add.
/// </summary>
public static class CpuidSetup
{
    private const uint HypervisorPresent = 1u << 31;
    private const uint HyperThreading = 1u << 28;
    private const uint TscDeadlineTimer = 1u << 24;
    private const uint LevelSmt = 1, LevelCore = 2;

    /// <param name="tscDeadline">Advertise the TSC-deadline timer: only with KVM's in-kernel LAPIC and
    /// KVM_CAP_TSC_DEADLINE_TIMER. Without it Linux programs the LAPIC timer in one-shot mode, calibrated
    /// against the PIT first, which made the boot measurably slower in the nested testbed.</param>
    public static void Apply(KvmVcpu vcpu, kvm_cpuid_entry2[] supported, int cpus, bool tscDeadline = false) =>
        vcpu.SetCpuid(Build(supported, vcpu.Id, cpus, tscDeadline));

    public static kvm_cpuid_entry2[] Build(kvm_cpuid_entry2[] supported, int vcpuId, int cpus, bool tscDeadline = false)
    {
        uint apicId = (uint)vcpuId;
        uint count = (uint)Math.Max(1, cpus);
        uint coreBits = (uint)BitOperations.Log2(BitOperations.RoundUpToPowerOf2(count));
        var entries = new List<kvm_cpuid_entry2>(supported.Length + 4);
        foreach (var original in supported)
        {
            var entry = original;
            switch (entry.function)
            {
                case 1:
                    entry.ebx = (entry.ebx & 0x0000FFFF) | (apicId << 24) | (BitOperations.RoundUpToPowerOf2(count) << 16);
                    entry.edx = count > 1 ? entry.edx | HyperThreading : entry.edx & ~HyperThreading;
                    // KVM does not report the "running on a hypervisor" bit; without it Linux never
                    // looks at the KVM leaves (0x40000000), so no kvm-clock and no paravirt features.
                    entry.ecx |= HypervisorPresent;
                    entry.ecx = tscDeadline ? entry.ecx | TscDeadlineTimer : entry.ecx & ~TscDeadlineTimer;
                    break;
                case 4 when (entry.eax & 0x1F) != 0:
                    entry.eax = (entry.eax & 0x03FFFFFF) | ((BitOperations.RoundUpToPowerOf2(count) - 1) << 26);
                    break;
                case 0xB:
                case 0x1F:
                    continue; // rebuilt below
                case 0x80000008:
                    entry.ecx = (entry.ecx & ~0xF0FFu) | (coreBits << 12) | (count - 1);
                    break;
            }
            entries.Add(entry);
        }
        // Extended topology: level 0 = SMT (one thread), level 1 = core (one per vCPU), then the end marker.
        foreach (uint leaf in new uint[] { 0xB, 0x1F })
        {
            if (!supported.Any(e => e.function == leaf)) continue;
            entries.Add(Topology(leaf, 0, 0, 1, LevelSmt, apicId));
            entries.Add(Topology(leaf, 1, coreBits, count, LevelCore, apicId));
            entries.Add(Topology(leaf, 2, 0, 0, 0, apicId));
        }
        return entries.ToArray();
    }

    private static kvm_cpuid_entry2 Topology(uint leaf, uint level, uint shift, uint processors, uint type, uint apicId) => new()
    {
        function = leaf,
        index = level,
        flags = 1, // KVM_CPUID_FLAG_SIGNIFCANT_INDEX
        eax = shift,
        ebx = processors,
        ecx = (type << 8) | level,
        edx = apicId,
    };
}
