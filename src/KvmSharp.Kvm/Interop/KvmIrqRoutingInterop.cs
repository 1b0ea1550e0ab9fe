using System.Runtime.InteropServices;

// Interop structs mirror <linux/kvm.h> verbatim, names included; a test proves each layout with gcc.
#pragma warning disable IDE1006, CS0649
namespace KvmSharp.Kvm.Interop;

/// <summary>A GSI routed to a pin of an in-kernel interrupt controller (KVM_IRQ_ROUTING_IRQCHIP).</summary>
[KvmLayout("struct kvm_irq_routing_irqchip"), StructLayout(LayoutKind.Sequential)]
public struct kvm_irq_routing_irqchip
{
    /// <summary>KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE or KVM_IRQCHIP_IOAPIC.</summary>
    public uint irqchip;
    public uint pin;
}

/// <summary>A GSI routed to an MSI message (KVM_IRQ_ROUTING_MSI).</summary>
[KvmLayout("struct kvm_irq_routing_msi"), StructLayout(LayoutKind.Sequential)]
public struct kvm_irq_routing_msi
{
    public uint address_lo;
    public uint address_hi;
    public uint data;
    /// <summary>The anonymous union { pad; devid } (devid only with KVM_MSI_VALID_DEVID, not on x86).</summary>
    public uint devid;
}

/// <summary>One entry of KVM_SET_GSI_ROUTING's table: the fixed part, then the union u (32 bytes).</summary>
[KvmLayout("struct kvm_irq_routing_entry"), StructLayout(LayoutKind.Explicit, Size = 48)]
public unsafe struct kvm_irq_routing_entry
{
    [FieldOffset(0)] public uint gsi;
    /// <summary>KVM_IRQ_ROUTING_IRQCHIP or KVM_IRQ_ROUTING_MSI.</summary>
    [FieldOffset(4)] public uint type;
    [FieldOffset(8)] public uint flags;
    [FieldOffset(12)] public uint pad;
    [FieldOffset(16), KvmFieldName("u.irqchip")] public kvm_irq_routing_irqchip irqchip;
    [FieldOffset(16), KvmFieldName("u.msi")] public kvm_irq_routing_msi msi;
    [FieldOffset(16), KvmFieldName("u.pad")] public fixed uint u_pad[8];
}

/// <summary>Header of the variable-length kvm_irq_routing; nr entries follow it in memory.</summary>
[KvmLayout("struct kvm_irq_routing"), StructLayout(LayoutKind.Sequential)]
public struct kvm_irq_routing
{
    public uint nr;
    public uint flags;
}

/// <summary>KVM_SIGNAL_MSI's argument: inject one MSI message now.</summary>
[KvmLayout("struct kvm_msi"), StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_msi
{
    public uint address_lo;
    public uint address_hi;
    public uint data;
    public uint flags;
    public uint devid;
    public fixed byte pad[12];
}

public static class KvmIrqRouting
{
    public const uint KVM_IRQ_ROUTING_IRQCHIP = 1;
    public const uint KVM_IRQ_ROUTING_MSI = 2;
    public const uint KVM_IRQCHIP_PIC_MASTER = 0;
    public const uint KVM_IRQCHIP_PIC_SLAVE = 1;
    public const uint KVM_IRQCHIP_IOAPIC = 2;
    /// <summary>Pins of KVM's IOAPIC (KVM_IOAPIC_NUM_PINS): GSIs 0-23 are the irqchip's.</summary>
    public const uint KVM_IOAPIC_NUM_PINS = 24;
}
