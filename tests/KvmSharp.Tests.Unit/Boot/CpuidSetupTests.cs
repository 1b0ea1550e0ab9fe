using KvmSharp.Kvm.Interop;
using KvmSharp.Vmm.Boot;
using Xunit;

namespace KvmSharp.Tests.Unit.Boot;

public sealed class CpuidSetupTests
{
    private static readonly kvm_cpuid_entry2[] Supported =
    [
        new() { function = 1, ebx = 0xAB0F0800, ecx = 0x1, edx = 0x0 },
        new() { function = 4, index = 0, eax = 0x121 },
        new() { function = 0xB, index = 0, flags = 1, eax = 9, ebx = 9, ecx = 0x100 },
        new() { function = 0x80000008, ecx = 0x3F0F },
    ];

    private static kvm_cpuid_entry2 Leaf(kvm_cpuid_entry2[] entries, uint function, uint index = 0) =>
        Assert.Single(entries, e => e.function == function && e.index == index);

    [Fact]
    public void Each_vcpu_gets_its_apic_id_and_the_package_counts_every_vcpu()
    {
        var entries = CpuidSetup.Build(Supported, vcpuId: 2, cpus: 3);

        var basic = Leaf(entries, 1);
        Assert.Equal(2u, basic.ebx >> 24);                   // initial APIC id
        Assert.Equal(4u, (basic.ebx >> 16) & 0xFF);          // addressable logical processors (power of two)
        Assert.Equal(0x0800u, basic.ebx & 0xFFFF);           // the rest of EBX is KVM's
        Assert.NotEqual(0u, basic.edx & (1u << 28));         // multi-processor package
        Assert.NotEqual(0u, basic.ecx & (1u << 31));         // hypervisor present
        Assert.Equal(3u, Leaf(entries, 4).eax >> 26);        // cores per package - 1 (power of two)

        var smt = Leaf(entries, 0xB, 0);
        var core = Leaf(entries, 0xB, 1);
        Assert.Equal((0u, 1u, 0x100u, 2u), (smt.eax, smt.ebx, smt.ecx, smt.edx));
        Assert.Equal((2u, 3u, 0x201u, 2u), (core.eax, core.ebx, core.ecx, core.edx));
        Assert.Equal(0u, Leaf(entries, 0xB, 2).ecx >> 8 & 0xFF); // end of levels
        Assert.DoesNotContain(entries, e => e.function == 0x1F); // not invented where KVM has none

        var amd = Leaf(entries, 0x80000008);
        Assert.Equal(2u, amd.ecx & 0xFF);                    // NC: cores - 1
        Assert.Equal(2u, (amd.ecx >> 12) & 0xF);             // APIC id bits for the core
    }

    [Fact]
    public void A_single_vcpu_is_not_a_multi_processor_package()
    {
        var entries = CpuidSetup.Build(Supported, vcpuId: 0, cpus: 1);
        Assert.Equal(0u, Leaf(entries, 1).edx & (1u << 28));
        Assert.Equal(1u, Leaf(entries, 0xB, 1).ebx);
        Assert.Equal(0u, Leaf(entries, 0x80000008).ecx & 0xFF);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void The_tsc_deadline_timer_is_advertised_only_when_asked(bool tscDeadline)
    {
        var supported = Supported.Select(e => e.function == 1 ? e with { ecx = e.ecx | (1u << 24) } : e).ToArray();
        var entries = CpuidSetup.Build(tscDeadline ? Supported : supported, vcpuId: 0, cpus: 1, tscDeadline);
        var basic = Leaf(entries, 1);
        Assert.Equal(tscDeadline, (basic.ecx & (1u << 24)) != 0);
        Assert.NotEqual(0u, basic.ecx & 0x1);                // the other feature bits stay
    }
}
