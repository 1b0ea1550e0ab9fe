using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Iced.Intel;
using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Vmm.Vcpus;

namespace KvmSharp.Vmm.PageTracking;

/// <summary>
/// Completes instructions KVM's emulator refuses (KVM_INTERNAL_ERROR_EMULATION) when they access a
/// tracked page, so no store kills the VM: lock cmpxchg16b and cmpxchg8b, and the vector moves
/// (SSE/VEX/EVEX movdqu/movdqa/movups/movaps/movupd/movapd/movntdq/movntps/movntpd and the EVEX
/// vmovdqu8-64/vmovdqa32-64, with merge-masking). The instruction is decoded with Iced from the bytes
/// the exit carries (KVM_CAP_EXIT_ON_EMULATION_FAILURE) or at RIP, its address computed from the
/// registers and translated by KVM_TRANSLATE, vector registers read and written through
/// KVM_GET_XSAVE/KVM_SET_XSAVE; the store is done with its width and atomicity, the write reported
/// per page, registers and flags updated and RIP advanced. Anything else on a tracked page ends the
/// VM with the instruction's disassembly as the reason.
/// </summary>
public sealed unsafe class TrackedInstructionEmulator : IEmulationFailureHandler
{
    private readonly PageTracker _tracker;
    private readonly MemslotTable _memslots;
    private readonly Context[] _contexts;
    private long _emulated;

    public TrackedInstructionEmulator(PageTracker tracker, MemslotTable memslots, int vcpuCount)
    {
        _tracker = tracker;
        _memslots = memslots;
        _contexts = new Context[Math.Max(1, vcpuCount)];
        for (int i = 0; i < _contexts.Length; i++) _contexts[i] = new Context();
    }

    /// <summary>Instructions completed on KVM's behalf so far.</summary>
    public long Emulated => Interlocked.Read(ref _emulated);

    private sealed class Context
    {
        public readonly InstructionFetcher Fetcher = new();
        public readonly VATryGetRegisterValue Resolve;
        public kvm_regs Regs;
        public kvm_sregs Sregs;
        public int Bitness;
        public kvm_xsave* Xsave = (kvm_xsave*)NativeMemory.AlignedAlloc((nuint)sizeof(kvm_xsave), 64);

        public Context() => Resolve = TryGetRegister;

        private bool TryGetRegister(Register register, int elementIndex, int elementSize, out ulong value)
        {
            value = 0;
            if (register.IsSegmentRegister())
            {
                var segment = register switch
                {
                    Register.FS => Sregs.fs, Register.GS => Sregs.gs, Register.CS => Sregs.cs,
                    Register.SS => Sregs.ss, Register.ES => Sregs.es, _ => Sregs.ds,
                };
                value = Bitness == 64 && register is not (Register.FS or Register.GS) ? 0 : segment.@base;
                return true;
            }
            if (register.IsGPR())
            {
                value = GuestRegisters.Read(Regs, register);
                return true;
            }
            if (register == Register.RIP || register == Register.EIP)
            {
                value = Regs.rip;
                return true;
            }
            return false;
        }
    }

    public bool TryHandle(int vcpuId, kvm_run* run, out string? reason)
    {
        reason = null;
        var failure = (kvm_run_emulation_failure*)((byte*)run + kvm_run.ExitUnionOffset);
        if (failure->suberror != KvmInternalError.KVM_INTERNAL_ERROR_EMULATION) return false;
        if (VcpuRunner.Current is not { } runner || runner.Id != vcpuId || runner.Vcpu is not { } vcpu || (uint)vcpuId >= (uint)_contexts.Length) return false;
        var context = _contexts[vcpuId];
        context.Regs = vcpu.GetRegisters();
        context.Sregs = vcpu.GetSpecialRegisters();
        context.Bitness = InstructionFetcher.BitnessOf(context.Sregs);
        int addressSpace = run->flags & KvmRunFlags.KVM_RUN_X86_SMM;

        Instruction instruction;
        bool decoded;
        bool hasBytes = (failure->flags & KvmInternalError.KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) != 0 && failure->ndata >= 3 && failure->insn_size > 0;
        if (hasBytes) decoded = context.Fetcher.TryDecode(new ReadOnlySpan<byte>(failure->insn_bytes, Math.Min((int)failure->insn_size, 15)), context.Bitness, context.Regs.rip, out instruction);
        else decoded = context.Fetcher.TryDecodeAtRip(vcpu, _memslots.Current, addressSpace, context.Regs, context.Sregs, out instruction);
        if (!decoded) return false;

        int memoryOperand = instruction.Op0Kind == OpKind.Memory ? 0 : instruction.OpCount > 1 && instruction.Op1Kind == OpKind.Memory ? 1 : -1;
        if (memoryOperand < 0) return false;
        if (!instruction.TryGetVirtualAddress(memoryOperand, 0, out ulong linear, context.Resolve)) return false;
        int width = instruction.MemorySize.GetSize();
        if (width is <= 0 or > 64) return false;
        if (!TryTranslate(vcpu, linear, width, out ulong firstGpa, out ulong secondGpa, out int firstLength)) return false;
        if (!_tracker.TryFindTrappedPage(addressSpace, firstGpa, out var firstPage)) return false;
        TrappedPage secondPage = default;
        if (firstLength < width && !_tracker.TryFindTrappedPage(addressSpace, secondGpa, out secondPage)) return false;
        if (!firstPage.Tracked && !secondPage.Tracked) return false; // not a tracked page: KVM's verdict stands

        bool done = instruction.Mnemonic switch
        {
            Mnemonic.Cmpxchg16b or Mnemonic.Cmpxchg8b => CompareExchangeWide(vcpuId, vcpu, context, instruction, width, firstGpa, firstLength, firstPage),
            _ when IsVectorMove(instruction) && memoryOperand == 0 => StoreVector(vcpuId, vcpu, context, instruction, width, firstGpa, firstLength, firstPage, secondGpa, secondPage),
            _ when IsVectorMove(instruction) && memoryOperand == 1 => LoadVector(vcpu, context, instruction, width, firstGpa, firstLength, firstPage, secondGpa, secondPage),
            _ => false,
        };
        if (!done)
        {
            reason = $"KvmSharp cannot complete `{Format(instruction)}` on tracked gpa 0x{firstGpa:x} (KVM's emulator refused it too)";
            return false;
        }
        context.Regs.rip += (ulong)instruction.Length;
        vcpu.SetRegisters(context.Regs);
        Interlocked.Increment(ref _emulated);
        return true;
    }

    private static bool TryTranslate(KvmVcpu vcpu, ulong linear, int width, out ulong firstGpa, out ulong secondGpa, out int firstLength)
    {
        secondGpa = 0;
        firstLength = (int)Math.Min((ulong)width, TrappedPage.Size - (linear & (TrappedPage.Size - 1)));
        if (!vcpu.TryTranslate(linear, out firstGpa, out _)) return false;
        return firstLength == width || vcpu.TryTranslate(linear + (ulong)firstLength, out secondGpa, out _);
    }

    // cmpxchg8b/16b: compare rdx:rax with memory; equal stores rcx:rbx and sets ZF, else loads memory into rdx:rax and clears ZF.
    private bool CompareExchangeWide(int vcpuId, KvmVcpu vcpu, Context context, in Instruction instruction, int width, ulong gpa, int firstLength, in TrappedPage page)
    {
        if (firstLength != width) return false; // split across pages: the CPU raises #GP (16) or locks a bus (8); not emulated
        byte* host = (byte*)page.HostPage + (gpa & (TrappedPage.Size - 1));
        ref var regs = ref context.Regs;
        bool stored;
        if (width == 16)
        {
            if ((gpa & 15) != 0) return false; // the CPU raises #GP for a misaligned cmpxchg16b
            var expected = new UInt128(regs.rdx, regs.rax);
            stored = NativeCompareExchange16.CompareExchange(host, ref expected, new UInt128(regs.rcx, regs.rbx));
            if (!stored)
            {
                regs.rax = (ulong)expected;
                regs.rdx = (ulong)(expected >> 64);
            }
        }
        else
        {
            ulong expected = ((regs.rdx & 0xFFFF_FFFF) << 32) | (regs.rax & 0xFFFF_FFFF);
            ulong desired = ((regs.rcx & 0xFFFF_FFFF) << 32) | (regs.rbx & 0xFFFF_FFFF);
            ulong old = Interlocked.CompareExchange(ref *(ulong*)host, desired, expected);
            stored = old == expected;
            if (!stored)
            {
                regs.rax = old & 0xFFFF_FFFF;
                regs.rdx = old >> 32;
            }
        }
        regs.rflags = stored ? regs.rflags | GuestRegisters.ZeroFlag : regs.rflags & ~GuestRegisters.ZeroFlag;
        if (stored) Report(vcpuId, page, gpa, new ReadOnlySpan<byte>(host, width));
        return true;
    }

    private static bool IsVectorMove(in Instruction instruction) => instruction.Mnemonic is
        Mnemonic.Movdqu or Mnemonic.Movdqa or Mnemonic.Movups or Mnemonic.Movaps or Mnemonic.Movupd or Mnemonic.Movapd
        or Mnemonic.Movntdq or Mnemonic.Movntps or Mnemonic.Movntpd
        or Mnemonic.Vmovdqu or Mnemonic.Vmovdqa or Mnemonic.Vmovups or Mnemonic.Vmovaps or Mnemonic.Vmovupd or Mnemonic.Vmovapd
        or Mnemonic.Vmovntdq or Mnemonic.Vmovntps or Mnemonic.Vmovntpd
        or Mnemonic.Vmovdqu8 or Mnemonic.Vmovdqu16 or Mnemonic.Vmovdqu32 or Mnemonic.Vmovdqu64 or Mnemonic.Vmovdqa32 or Mnemonic.Vmovdqa64;

    private static int VectorIndex(Register register) =>
        register.IsXMM() ? register - Register.XMM0 : register.IsYMM() ? register - Register.YMM0 : register.IsZMM() ? register - Register.ZMM0 : -1;

    private bool StoreVector(int vcpuId, KvmVcpu vcpu, Context context, in Instruction instruction, int width, ulong firstGpa, int firstLength, in TrappedPage firstPage, ulong secondGpa, in TrappedPage secondPage)
    {
        int index = VectorIndex(instruction.Op1Register);
        if (index < 0 || (width > 16 && !instruction.Op1Register.IsYMM() && !instruction.Op1Register.IsZMM())) return false;
        if (width == 64 && !XsaveLayout.HasAvx512) return false;
        vcpu.GetXsave(context.Xsave);
        Span<byte> value = stackalloc byte[64];
        if (!XsaveLayout.TryRead(context.Xsave, index, value[..width])) return false;

        ulong mask = ulong.MaxValue;
        int element = width;
        if (instruction.OpMask != Register.None)
        {
            element = instruction.MemorySize.GetElementSize();
            if (element <= 0) return false;
            mask = XsaveLayout.ReadOpmask(context.Xsave, instruction.OpMask - Register.K0);
        }
        bool masked = instruction.OpMask != Register.None;
        // Per page; a masked store writes (and reports) its runs of selected elements.
        StorePart(vcpuId, firstPage, firstGpa, value[..firstLength], 0, element, mask, masked);
        if (firstLength < width) StorePart(vcpuId, secondPage, secondGpa, value[firstLength..width], firstLength, element, mask, masked);
        return true;
    }

    private void StorePart(int vcpuId, in TrappedPage page, ulong gpa, ReadOnlySpan<byte> bytes, int offsetInValue, int element, ulong mask, bool masked)
    {
        byte* host = (byte*)page.HostPage + (gpa & (TrappedPage.Size - 1));
        if (!masked)
        {
            Store(host, bytes);
            _tracker.MarkWritten(page);
            if (page.Tracked) Report(vcpuId, page, gpa, bytes);
            return;
        }
        int runStart = -1;
        for (int i = 0; i <= bytes.Length; i++)
        {
            bool selected = i < bytes.Length && ((mask >> ((offsetInValue + i) / element)) & 1) != 0;
            if (selected && runStart < 0) runStart = i;
            if (selected || runStart < 0) continue;
            var run = bytes[runStart..i];
            Store(host + runStart, run);
            _tracker.MarkWritten(page);
            if (page.Tracked) Report(vcpuId, page, gpa + (ulong)runStart, run);
            runStart = -1;
        }
    }

    // 16-byte aligned parts as single 16-byte stores (atomic on AVX CPUs, as the guest's own would be).
    private static void Store(byte* host, ReadOnlySpan<byte> bytes)
    {
        int i = 0;
        for (; i + 16 <= bytes.Length; i += 16)
            Vector128.Create(bytes.Slice(i, 16)).Store(host + i);
        if (i < bytes.Length) GuestMemoryAccess.Store(host + i, bytes[i..]);
    }

    private bool LoadVector(KvmVcpu vcpu, Context context, in Instruction instruction, int width, ulong firstGpa, int firstLength, in TrappedPage firstPage, ulong secondGpa, in TrappedPage secondPage)
    {
        if (instruction.OpMask != Register.None) return false;
        int index = VectorIndex(instruction.Op0Register);
        if (index < 0 || (width == 64 && !XsaveLayout.HasAvx512)) return false;
        Span<byte> value = stackalloc byte[64];
        new ReadOnlySpan<byte>((byte*)firstPage.HostPage + (firstGpa & (TrappedPage.Size - 1)), firstLength).CopyTo(value);
        if (firstLength < width) new ReadOnlySpan<byte>((byte*)secondPage.HostPage + (secondGpa & (TrappedPage.Size - 1)), width - firstLength).CopyTo(value[firstLength..]);
        vcpu.GetXsave(context.Xsave);
        // VEX and EVEX loads zero the register above what they load; legacy SSE loads keep it.
        int zeroUpTo = instruction.Encoding is EncodingKind.VEX or EncodingKind.EVEX ? (XsaveLayout.HasAvx512 ? 64 : 32) : 0;
        if (!XsaveLayout.TryWrite(context.Xsave, index, value[..width], zeroUpTo)) return false;
        vcpu.SetXsave(context.Xsave);
        return true;
    }

    private void Report(int vcpuId, in TrappedPage page, ulong gpa, ReadOnlySpan<byte> bytes)
    {
        if (page.Tracked) _tracker.ReportGuestWrite(vcpuId, gpa, bytes, page.Slot.AddressSpace);
    }

    private static string Format(in Instruction instruction)
    {
        var formatter = new NasmFormatter();
        var output = new StringOutput();
        formatter.Format(instruction, output);
        return output.ToStringAndReset();
    }
}
