using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Vmm.Memory;

namespace KvmSharp.Vmm.Boot;

/// <summary>
/// Puts a vCPU straight into 64-bit long mode, as Firecracker does for the Linux 64-bit entry: a GDT,
/// identity page tables for the first 4 GiB (2 MiB pages), and matching segment and control registers.
/// </summary>
public static class LongModeSetup
{
    public const ulong GdtAddress = 0x500;
    public const ulong Pml4Address = 0x9000;
    public const ulong PdptAddress = 0xA000;
    public const ulong PdAddress = 0xB000; // four page directories, 0xB000-0xEFFF
    public const ulong LowestUsableAfterTables = 0x10000;
    public const ushort CodeSelector = 0x08, DataSelector = 0x10, TssSelector = 0x18, Code32Selector = 0x28;

    /// <summary>GDT: null, 64-bit code, data, 64-bit TSS (two slots), 32-bit code (the PVH entry).</summary>
    public const ushort GdtLimit = 6 * 8 - 1;

    private const ulong Code64Descriptor = 0x00AF9B000000FFFF;
    private const ulong Data64Descriptor = 0x00CF93000000FFFF;
    private const ulong Tss64DescriptorLow = 0x00008B0000000067;
    private const ulong Code32Descriptor = 0x00CF9B000000FFFF;

    /// <summary>Write the GDT and page tables into guest memory (once per VM).</summary>
    public static void WriteTables(GuestPhysicalMemory memory)
    {
        memory.WriteUInt64(GdtAddress + 0x00, 0);
        memory.WriteUInt64(GdtAddress + 0x08, Code64Descriptor);
        memory.WriteUInt64(GdtAddress + 0x10, Data64Descriptor);
        memory.WriteUInt64(GdtAddress + 0x18, Tss64DescriptorLow);
        memory.WriteUInt64(GdtAddress + 0x20, 0);
        memory.WriteUInt64(GdtAddress + 0x28, Code32Descriptor);

        var pml4 = new byte[4096];
        BitConverter.TryWriteBytes(pml4.AsSpan(0), PdptAddress | X86.PTE_PRESENT | X86.PTE_WRITE);
        memory.Write(Pml4Address, pml4);

        var pdpt = new byte[4096];
        for (int i = 0; i < 4; i++)
            BitConverter.TryWriteBytes(pdpt.AsSpan(i * 8), (PdAddress + (ulong)i * 4096) | X86.PTE_PRESENT | X86.PTE_WRITE);
        memory.Write(PdptAddress, pdpt);

        var pd = new byte[4 * 4096];
        for (int i = 0; i < 4 * 512; i++)
            BitConverter.TryWriteBytes(pd.AsSpan(i * 8), ((ulong)i << 21) | X86.PTE_PRESENT | X86.PTE_WRITE | X86.PTE_LARGE);
        memory.Write(PdAddress, pd);
    }

    /// <summary>Load long-mode segment and control registers, then RIP/RSP and the entry arguments.</summary>
    public static void Enter(KvmVcpu vcpu, ulong entry, ulong stackTop, ReadOnlySpan<ulong> arguments)
    {
        var sregs = vcpu.GetSpecialRegisters();
        var code = new kvm_segment
        {
            @base = 0, limit = 0xFFFFFFFF, selector = CodeSelector, type = 11, present = 1, dpl = 0, db = 0, s = 1, l = 1, g = 1,
        };
        var data = new kvm_segment
        {
            @base = 0, limit = 0xFFFFFFFF, selector = DataSelector, type = 3, present = 1, dpl = 0, db = 1, s = 1, l = 0, g = 1,
        };
        sregs.cs = code;
        sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
        sregs.tr = new kvm_segment { @base = 0, limit = 0x67, selector = TssSelector, type = 11, present = 1, s = 0 };
        sregs.gdt = new kvm_dtable { @base = GdtAddress, limit = GdtLimit };
        sregs.idt = new kvm_dtable { @base = 0, limit = 0 };
        sregs.cr3 = Pml4Address;
        sregs.cr4 = X86.CR4_PAE | X86.CR4_OSFXSR | X86.CR4_OSXMMEXCPT;
        sregs.cr0 = X86.CR0_PE | X86.CR0_MP | X86.CR0_ET | X86.CR0_NE | X86.CR0_WP | X86.CR0_AM | X86.CR0_PG;
        sregs.efer = X86.EFER_LME | X86.EFER_LMA | X86.EFER_SCE;
        vcpu.SetSpecialRegisters(sregs);

        var regs = new kvm_regs { rip = entry, rsp = stackTop, rbp = stackTop, rflags = X86.RFLAGS_RESERVED };
        if (arguments.Length > 0) regs.rdi = arguments[0];
        if (arguments.Length > 1) regs.rsi = arguments[1];
        if (arguments.Length > 2) regs.rdx = arguments[2];
        if (arguments.Length > 3) regs.rcx = arguments[3];
        vcpu.SetRegisters(regs);
    }
}
