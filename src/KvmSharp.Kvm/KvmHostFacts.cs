using KvmSharp.Kvm.Interop;

namespace KvmSharp.Kvm;

/// <summary>What a user needs to know about this host's KVM, gathered from /dev/kvm, a scratch VM and /sys/module.</summary>
public sealed record KvmHostFacts(
    string DevicePath,
    int ApiVersion,
    IReadOnlyList<(KvmCap Capability, int SystemValue, int VmValue)> Capabilities,
    IReadOnlyList<string> VendorModules,
    int VcpuMmapSize)
{
    /// <summary>The modules that can back /dev/kvm; kvm_pvm runs guest kernel mode by emulation.</summary>
    public static readonly string[] KnownVendorModules = ["kvm_intel", "kvm_amd", "kvm_pvm"];

    public int Value(KvmCap capability) => Capabilities.FirstOrDefault(c => c.Capability == capability).VmValue;

    public bool SmmSupported => Value(KvmCap.KVM_CAP_X86_SMM) > 0;
    public int AddressSpaces => Math.Max(1, Value(KvmCap.KVM_CAP_MULTI_ADDRESS_SPACE));
    public int MemslotsPerAddressSpace => Value(KvmCap.KVM_CAP_NR_MEMSLOTS);

    /// <summary>
    /// True for a PVM-style KVM (module kvm_pvm), which emulates guest CPL0 code instruction by
    /// instruction: kernel-mode guests run about a million instructions per second.
    /// </summary>
    public bool EmulatesGuestKernelMode => VendorModules.Contains("kvm_pvm");

    public static KvmHostFacts Read(KvmSystem system, string sysModuleRoot = "/sys/module")
    {
        using var vm = system.CreateVm();
        var capabilities = Enum.GetValues<KvmCap>()
            .Select(cap => (cap, system.CheckExtension(cap), vm.CheckExtension(cap)))
            .ToList();
        var modules = KnownVendorModules.Where(name => Directory.Exists(Path.Combine(sysModuleRoot, name))).ToList();
        return new KvmHostFacts(system.Path, system.ApiVersion, capabilities, modules, system.VcpuMmapSize);
    }
}
