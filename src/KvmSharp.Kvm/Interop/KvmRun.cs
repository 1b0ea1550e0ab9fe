using System.Runtime.InteropServices;

#pragma warning disable IDE1006, CS0649
namespace KvmSharp.Kvm.Interop;

/// <summary>The shared kvm_run page header (mmap'd from the vCPU fd). The exit union starts at offset 32.</summary>
[KvmLayout("struct kvm_run"), StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_run
{
    public const int ExitUnionOffset = 32;

    public byte request_interrupt_window;
    public byte immediate_exit;
    public fixed byte padding1[6];
    public uint exit_reason;
    public byte ready_for_interrupt_injection;
    public byte if_flag;
    public ushort flags;
    public ulong cr8;
    public ulong apic_base;
    /// <summary>The exit-specific union (256 bytes); read it through the kvm_run_* views.</summary>
    [KvmFieldName("io")]
    public fixed byte exit_union[256];
    public ulong kvm_valid_regs;
    public ulong kvm_dirty_regs;
    public fixed byte s[2048];
}

public static class KvmRunIoDirection
{
    public const byte KVM_EXIT_IO_IN = 0;
    public const byte KVM_EXIT_IO_OUT = 1;
}

[KvmLayout("struct kvm_run", "io", kvm_run.ExitUnionOffset), StructLayout(LayoutKind.Sequential)]
public struct kvm_run_io
{
    public byte direction;
    public byte size;
    public ushort port;
    public uint count;
    /// <summary>Offset of the data from the start of kvm_run.</summary>
    public ulong data_offset;
}

[KvmLayout("struct kvm_run", "mmio", kvm_run.ExitUnionOffset), StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_run_mmio
{
    public ulong phys_addr;
    public fixed byte data[8];
    public uint len;
    public byte is_write;
}

[KvmLayout("struct kvm_run", "fail_entry", kvm_run.ExitUnionOffset), StructLayout(LayoutKind.Sequential)]
public struct kvm_run_fail_entry
{
    public ulong hardware_entry_failure_reason;
    public uint cpu;
}

[KvmLayout("struct kvm_run", "internal", kvm_run.ExitUnionOffset), StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_run_internal
{
    public uint suberror;
    public uint ndata;
    public fixed ulong data[16];
}

/// <summary>KVM_INTERNAL_ERROR_EMULATION with KVM_CAP_EXIT_ON_EMULATION_FAILURE: the bytes of the instruction KVM could not emulate.</summary>
[KvmLayout("struct kvm_run", "emulation_failure", kvm_run.ExitUnionOffset), StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_run_emulation_failure
{
    public uint suberror;
    public uint ndata;
    public ulong flags;
    public byte insn_size;
    public fixed byte insn_bytes[15];
}

public static class KvmInternalError
{
    public const uint KVM_INTERNAL_ERROR_EMULATION = 1;
    public const ulong KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES = 1;
}

[KvmLayout("struct kvm_run", "system_event", kvm_run.ExitUnionOffset), StructLayout(LayoutKind.Sequential)]
public unsafe struct kvm_run_system_event
{
    public uint type;
    public uint ndata;
    public fixed ulong data[16];
}

public static class KvmSystemEventType
{
    public const uint KVM_SYSTEM_EVENT_SHUTDOWN = 1;
    public const uint KVM_SYSTEM_EVENT_RESET = 2;
    public const uint KVM_SYSTEM_EVENT_CRASH = 3;
}

public static class KvmMemFlags
{
    public const uint KVM_MEM_LOG_DIRTY_PAGES = 1u << 0;
    public const uint KVM_MEM_READONLY = 1u << 1;
}

public static class KvmRunFlags
{
    /// <summary>kvm_run.flags bit: the vCPU was in System Management Mode at the exit.</summary>
    public const int KVM_RUN_X86_SMM = 1 << 0;
}
