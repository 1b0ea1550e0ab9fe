using System.Runtime.InteropServices;

// Interop structs mirror <linux/kvm.h> verbatim, names included; a test proves each layout with gcc.
#pragma warning disable IDE1006, CS0649
namespace KvmSharp.Kvm.Interop;

/// <summary>KVM_IOEVENTFD's argument: a guest write to addr (MMIO, or PIO with the flag) signals fd instead of exiting.</summary>
[KvmLayout("struct kvm_ioeventfd"), StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_ioeventfd
{
    public ulong datamatch;
    /// <summary>A legal PIO or MMIO address.</summary>
    public ulong addr;
    /// <summary>1, 2, 4 or 8 bytes (0 = any length, with KVM_CAP_IOEVENTFD_ANY_LENGTH).</summary>
    public uint len;
    public int fd;
    public uint flags;
    public fixed byte pad[36];
}

public static class KvmIoeventfdFlags
{
    public const uint KVM_IOEVENTFD_FLAG_DATAMATCH = 1u << 0;
    public const uint KVM_IOEVENTFD_FLAG_PIO = 1u << 1;
    public const uint KVM_IOEVENTFD_FLAG_DEASSIGN = 1u << 2;
}

/// <summary>KVM_IRQFD's argument: a write to fd injects gsi (through the GSI routing table).</summary>
[KvmLayout("struct kvm_irqfd"), StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_irqfd
{
    public uint fd;
    public uint gsi;
    public uint flags;
    public uint resamplefd;
    public fixed byte pad[16];
}

public static class KvmIrqfdFlags
{
    public const uint KVM_IRQFD_FLAG_DEASSIGN = 1u << 0;
    public const uint KVM_IRQFD_FLAG_RESAMPLE = 1u << 1;
}
