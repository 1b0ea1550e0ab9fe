using System.Runtime.InteropServices;

// Interop structs mirror <linux/kvm.h> verbatim, names included; a test proves each layout with gcc.
#pragma warning disable IDE1006, CS0649
namespace KvmSharp.Kvm.Interop;

[KvmLayout("struct kvm_userspace_memory_region"), StructLayout(LayoutKind.Sequential)]
public struct kvm_userspace_memory_region
{
    public uint slot;
    public uint flags;
    public ulong guest_phys_addr;
    public ulong memory_size;
    public ulong userspace_addr;
}

/// <summary>KVM_SET_USER_MEMORY_REGION2's argument (Linux 6.8+): the first five fields are the old struct's, then guest_memfd.</summary>
[KvmLayout("struct kvm_userspace_memory_region2"), StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_userspace_memory_region2
{
    public uint slot;
    public uint flags;
    public ulong guest_phys_addr;
    public ulong memory_size;
    public ulong userspace_addr;
    public ulong guest_memfd_offset;
    public uint guest_memfd;
    public uint pad1;
    public fixed ulong pad2[14];
}

[KvmLayout("struct kvm_regs"), StructLayout(LayoutKind.Sequential)]
public struct kvm_regs
{
    public ulong rax, rbx, rcx, rdx;
    public ulong rsi, rdi, rsp, rbp;
    public ulong r8, r9, r10, r11;
    public ulong r12, r13, r14, r15;
    public ulong rip, rflags;
}

[KvmLayout("struct kvm_segment"), StructLayout(LayoutKind.Sequential)]
public struct kvm_segment
{
    public ulong @base;
    public uint limit;
    public ushort selector;
    public byte type;
    public byte present, dpl, db, s, l, g, avl;
    public byte unusable;
    public byte padding;
}

[KvmLayout("struct kvm_dtable"), StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_dtable
{
    public ulong @base;
    public ushort limit;
    public fixed ushort padding[3];
}

[KvmLayout("struct kvm_sregs"), StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_sregs
{
    public kvm_segment cs, ds, es, fs, gs, ss;
    public kvm_segment tr, ldt;
    public kvm_dtable gdt, idt;
    public ulong cr0, cr2, cr3, cr4, cr8;
    public ulong efer;
    public ulong apic_base;
    public fixed ulong interrupt_bitmap[4];
}

[KvmLayout("struct kvm_fpu"), StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_fpu
{
    public fixed byte fpr[8 * 16];
    public ushort fcw;
    public ushort fsw;
    public byte ftwx;
    public byte pad1;
    public ushort last_opcode;
    public ulong last_ip;
    public ulong last_dp;
    public fixed byte xmm[16 * 16];
    public uint mxcsr;
    public uint pad2;
}

[KvmLayout("struct kvm_cpuid_entry2"), StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_cpuid_entry2
{
    public uint function;
    public uint index;
    public uint flags;
    public uint eax, ebx, ecx, edx;
    public fixed uint padding[3];
}

/// <summary>Header of the variable-length kvm_cpuid2; entries follow it in memory.</summary>
[KvmLayout("struct kvm_cpuid2"), StructLayout(LayoutKind.Sequential)]
public struct kvm_cpuid2
{
    public uint nent;
    public uint padding;
}

[KvmLayout("struct kvm_msr_entry"), StructLayout(LayoutKind.Sequential)]
public struct kvm_msr_entry
{
    public uint index;
    public uint reserved;
    public ulong data;
}

/// <summary>Header of the variable-length kvm_msrs; entries follow it in memory.</summary>
[KvmLayout("struct kvm_msrs"), StructLayout(LayoutKind.Sequential)]
public struct kvm_msrs
{
    public uint nmsrs;
    public uint pad;
}

/// <summary>Header of the variable-length kvm_msr_list; indices follow it in memory.</summary>
[KvmLayout("struct kvm_msr_list"), StructLayout(LayoutKind.Sequential)]
public struct kvm_msr_list
{
    public uint nmsrs;
}

[KvmLayout("struct kvm_dirty_log"), StructLayout(LayoutKind.Sequential)]
public struct kvm_dirty_log
{
    public uint slot;
    public uint padding1;
    public ulong dirty_bitmap;
}

[KvmLayout("struct kvm_irq_level"), StructLayout(LayoutKind.Sequential)]
public struct kvm_irq_level
{
    public uint irq;
    public uint level;
}

[KvmLayout("struct kvm_pit_config"), StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_pit_config
{
    public uint flags;
    public fixed uint pad[15];
}

[KvmLayout("struct kvm_enable_cap"), StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_enable_cap
{
    public uint cap;
    public uint flags;
    public fixed ulong args[4];
    public fixed byte pad[64];
}

[KvmLayout("struct kvm_translation"), StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_translation
{
    public ulong linear_address;
    public ulong physical_address;
    public byte valid;
    public byte writeable;
    public byte usermode;
    public fixed byte pad[5];
}

/// <summary>The vCPU's XSAVE area in the standard (non-compacted) format, as KVM_GET_XSAVE returns it.</summary>
[KvmLayout("struct kvm_xsave"), StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_xsave
{
    public fixed uint region[1024];
}

/// <summary>Header of kvm_signal_mask; the sigset bytes follow it.</summary>
[KvmLayout("struct kvm_signal_mask"), StructLayout(LayoutKind.Sequential)]
public struct kvm_signal_mask
{
    public uint len;
}

[KvmLayout("struct kvm_lapic_state"), StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_lapic_state
{
    public fixed byte regs[1024];
}

public static class KvmPitFlags
{
    /// <summary>KVM answers the PC speaker port 0x61 itself (timer 2 gate and output), as Linux's PIT calibration expects.</summary>
    public const uint KVM_PIT_SPEAKER_DUMMY = 1;
}

[KvmLayout("struct kvm_reinject_control"), StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_reinject_control
{
    public byte pit_reinject;
    public fixed byte reserved[31];
}
