using static KvmSharp.Kvm.Interop.IoctlNumber;

namespace KvmSharp.Kvm.Interop;

/// <summary>ioctl request numbers of &lt;linux/kvm.h&gt;, under their kernel names.</summary>
internal static unsafe class KvmIoctls
{
    private const uint KVMIO = 0xAE;

    // System ioctls (on the /dev/kvm fd).
    public static readonly uint KVM_GET_API_VERSION = IO(KVMIO, 0x00);
    public static readonly uint KVM_CREATE_VM = IO(KVMIO, 0x01);
    public static readonly uint KVM_GET_MSR_INDEX_LIST = IOWR(KVMIO, 0x02, sizeof(kvm_msr_list));
    public static readonly uint KVM_CHECK_EXTENSION = IO(KVMIO, 0x03);
    public static readonly uint KVM_GET_VCPU_MMAP_SIZE = IO(KVMIO, 0x04);
    public static readonly uint KVM_GET_SUPPORTED_CPUID = IOWR(KVMIO, 0x05, sizeof(kvm_cpuid2));

    // VM ioctls.
    public static readonly uint KVM_CREATE_VCPU = IO(KVMIO, 0x41);
    public static readonly uint KVM_GET_DIRTY_LOG = IOW(KVMIO, 0x42, sizeof(kvm_dirty_log));
    public static readonly uint KVM_SET_USER_MEMORY_REGION = IOW(KVMIO, 0x46, sizeof(kvm_userspace_memory_region));
    public static readonly uint KVM_SET_TSS_ADDR = IO(KVMIO, 0x47);
    public static readonly uint KVM_SET_USER_MEMORY_REGION2 = IOW(KVMIO, 0x49, sizeof(kvm_userspace_memory_region2));
    public static readonly uint KVM_SET_IDENTITY_MAP_ADDR = IOW(KVMIO, 0x48, sizeof(ulong));
    public static readonly uint KVM_CREATE_IRQCHIP = IO(KVMIO, 0x60);
    public static readonly uint KVM_IRQ_LINE = IOW(KVMIO, 0x61, sizeof(kvm_irq_level));
    public static readonly uint KVM_SET_GSI_ROUTING = IOW(KVMIO, 0x6a, sizeof(kvm_irq_routing));
    public static readonly uint KVM_IRQFD = IOW(KVMIO, 0x76, sizeof(kvm_irqfd));
    public static readonly uint KVM_IOEVENTFD = IOW(KVMIO, 0x79, sizeof(kvm_ioeventfd));
    public static readonly uint KVM_SIGNAL_MSI = IOW(KVMIO, 0xa5, sizeof(kvm_msi));
    public static readonly uint KVM_CREATE_PIT2 = IOW(KVMIO, 0x77, sizeof(kvm_pit_config));
    public static readonly uint KVM_REINJECT_CONTROL = IO(KVMIO, 0x71);
    public static readonly uint KVM_ENABLE_CAP = IOW(KVMIO, 0xa3, sizeof(kvm_enable_cap));
    public static readonly uint KVM_CLEAR_DIRTY_LOG = IOWR(KVMIO, 0xc0, sizeof(kvm_clear_dirty_log));
    public static readonly uint KVM_RESET_DIRTY_RINGS = IO(KVMIO, 0xc7);

    // vCPU ioctls.
    public static readonly uint KVM_RUN = IO(KVMIO, 0x80);
    public static readonly uint KVM_GET_REGS = IOR(KVMIO, 0x81, sizeof(kvm_regs));
    public static readonly uint KVM_SET_REGS = IOW(KVMIO, 0x82, sizeof(kvm_regs));
    public static readonly uint KVM_GET_SREGS = IOR(KVMIO, 0x83, sizeof(kvm_sregs));
    public static readonly uint KVM_SET_SREGS = IOW(KVMIO, 0x84, sizeof(kvm_sregs));
    public static readonly uint KVM_TRANSLATE = IOWR(KVMIO, 0x85, sizeof(kvm_translation));
    public static readonly uint KVM_GET_MSRS = IOWR(KVMIO, 0x88, sizeof(kvm_msrs));
    public static readonly uint KVM_SET_MSRS = IOW(KVMIO, 0x89, sizeof(kvm_msrs));
    public static readonly uint KVM_SET_SIGNAL_MASK = IOW(KVMIO, 0x8b, sizeof(kvm_signal_mask));
    public static readonly uint KVM_GET_FPU = IOR(KVMIO, 0x8c, sizeof(kvm_fpu));
    public static readonly uint KVM_SET_FPU = IOW(KVMIO, 0x8d, sizeof(kvm_fpu));
    public static readonly uint KVM_GET_LAPIC = IOR(KVMIO, 0x8e, sizeof(kvm_lapic_state));
    public static readonly uint KVM_SET_LAPIC = IOW(KVMIO, 0x8f, sizeof(kvm_lapic_state));
    public static readonly uint KVM_SET_CPUID2 = IOW(KVMIO, 0x90, sizeof(kvm_cpuid2));
    public static readonly uint KVM_GET_CPUID2 = IOWR(KVMIO, 0x91, sizeof(kvm_cpuid2));
    public static readonly uint KVM_GET_XSAVE = IOR(KVMIO, 0xa4, sizeof(kvm_xsave));
    public static readonly uint KVM_SET_XSAVE = IOW(KVMIO, 0xa5, sizeof(kvm_xsave));
    public static readonly uint KVM_KVMCLOCK_CTRL = IO(KVMIO, 0xad);

    /// <summary>Name of a request number, for error messages (never on the hot path).</summary>
    public static string NameOf(uint request)
    {
        foreach (var field in typeof(KvmIoctls).GetFields())
        {
            if (field.FieldType == typeof(uint) && (uint)field.GetValue(null)! == request) return field.Name;
        }
        return $"ioctl 0x{request:x8}";
    }
}
