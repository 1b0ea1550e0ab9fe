using Iced.Intel;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Tests.Integration.DirtyLog;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.PageTracking;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.PageTracking;

/// <summary>
/// Stores KVM's emulator refuses on a tracked page complete (issue 9, item 2): cmpxchg16b and the
/// vector moves are done by KvmSharp, reported once per page, registers and flags updated, at CPL0
/// and CPL3; anything still unsupported stops only that VM, naming the instruction.
/// </summary>
public sealed class EmulatedStoreTests
{
    private const ulong Page = 0x300000, Source = 0x400000, Results = 0x401000, UserStack = 0x500FF0;
    private const ulong DoneGate = 0xD000_0000;

    /// <summary>Enable SSE/AVX (and AVX-512 state when the CPU has it) at CPL0, then run <paramref name="body"/> at CPL0 or CPL3.</summary>
    private static GuestImage Guest(Action<Assembler> body, bool user, bool avx512 = false) => TestGuest.LongMode(a =>
    {
        a.mov(rax, cr4);
        a.or(rax, 1 << 18);            // OSXSAVE
        a.mov(cr4, rax);
        a.xor(ecx, ecx);
        a.xor(edx, edx);
        a.mov(eax, avx512 ? 0xE7 : 0x7); // XCR0: x87, SSE, AVX (+ opmask, ZMM_Hi256, Hi16_ZMM); no xgetbv (a PVM host cannot emulate it at CPL0)
        a.xsetbv();
        var code = a.CreateLabel();
        if (user)
        {
            UserModeEntry.LoadGdt(a);
            a.mov(rcx, UserStack);
            UserModeEntry.EnterUserMode(a, code, rcx);
        }
        a.Label(ref code);
        a.nop();
        a.mov(rsi, Source);
        a.mov(rbx, Page);
        a.mov(rdi, Results);
        body(a);
        // Done: an MMIO write (works at CPL3 too); the host stops the VM.
        a.mov(rax, DoneGate);
        a.mov(__dword_ptr[rax], 1);
        var spin = a.CreateLabel();
        a.Label(ref spin);
        a.pause();
        a.jmp(spin);
    });

    private static (VmOutcome Outcome, RecordingNotifier Notifier, VirtualMachine Vm) Run(GuestImage image, TrackingMode mode, byte[]? source = null, Action<VirtualMachine>? prepare = null)
    {
        var vm = TestGuest.Create(image, memory: 8UL << 20);
        DirtyWriterGuest.PrepareUserMode(vm.Memory);
        var gate = new SignalGate();
        vm.MmioBus.Register(DoneGate, 0x1000, gate, "done");
        vm.Memory.Write(Source, source ?? Pattern(64, 0x40));
        prepare?.Invoke(vm);
        var notifier = new RecordingNotifier(vm.Memory);
        vm.PageTracker.Register(notifier);
        vm.PageTracker.AddGfn(Page >> 12, mode);
        vm.Ended += _ => gate.Signalled.Set();
        vm.Start();
        bool done = gate.Signalled.Wait(TimeSpan.FromSeconds(30));
        if (vm.Outcome is null) vm.Stop("test done");
        vm.WaitForExit(TimeSpan.FromSeconds(10), out var outcome);
        Assert.True(done, "the guest did not finish");
        return (outcome!, notifier, vm);
    }

    private static void AssertStopped(VmOutcome outcome) =>
        Assert.True(outcome.Kind == VmExitKind.Stopped, $"{outcome.Kind}: {outcome.Summary}\n{outcome.Report}");

    private static byte[] Pattern(int length, byte first) => Enumerable.Range(0, length).Select(i => (byte)(first + i)).ToArray();

    private static string Hex(VirtualMachine vm, ulong gpa, int length)
    {
        var bytes = new byte[length];
        vm.Memory.Read(gpa, bytes);
        return Convert.ToHexString(bytes);
    }

    public static TheoryData<TrackingMode, bool> Modes() => new()
    {
        { TrackingMode.TrapAccesses, false }, { TrackingMode.TrapAccesses, true }, { TrackingMode.TrapWrites, false }, { TrackingMode.TrapWrites, true },
    };

    [KvmTheory]
    [InlineData(TrackingMode.TrapAccesses)]
    [InlineData(TrackingMode.TrapWrites)]
    public void Vex_vector_stores_at_cpl3_complete_and_are_reported_once_each(TrackingMode mode) => VexVectorStores(mode, user: true);

    [Cpl0VectorTheory]
    [InlineData(TrackingMode.TrapAccesses)]
    [InlineData(TrackingMode.TrapWrites)]
    public void Vex_vector_stores_at_cpl0_complete_and_are_reported_once_each(TrackingMode mode) => VexVectorStores(mode, user: false);

    private static void VexVectorStores(TrackingMode mode, bool user)
    {
        var (outcome, notifier, vm) = Run(Guest(a =>
        {
            a.vmovdqu(ymm0, __ymmword_ptr[rsi]);
            a.vmovdqu(__ymmword_ptr[rbx + 3], ymm0);      // unaligned 32 bytes
            a.vmovdqa(__xmmword_ptr[rbx + 0x40], xmm0);
            a.vmovups(__ymmword_ptr[rbx + 0x60], ymm0);
            a.vmovaps(__ymmword_ptr[rbx + 0xA0], ymm0);
            a.vmovntdq(__ymmword_ptr[rbx + 0xE0], ymm0);
            a.vmovdqu(__ymmword_ptr[rbx + 0xFF0], ymm0);  // 16 bytes here, 16 in the untracked next page
            a.mov(__dword_ptr[rdi], 0x600D);               // reached: RIP advanced past every store
        }, user), mode);
        using (vm)
        {
            AssertStopped(outcome);
            string pattern = Convert.ToHexString(Pattern(32, 0x40));
            Assert.Equal(
                [(Page + 3, pattern), (Page + 0x40, pattern[..32]), (Page + 0x60, pattern), (Page + 0xA0, pattern), (Page + 0xE0, pattern), (Page + 0xFF0, pattern[..32])],
                notifier.Writes.Select(w => (w.Gpa, Convert.ToHexString(w.Bytes))).ToArray());
            Assert.Equal(pattern, Hex(vm, Page + 3, 32));
            Assert.Equal(pattern, Hex(vm, Page + 0xFF0, 32));
            Assert.Equal(0x600DUL, vm.Memory.ReadUInt64(Results) & 0xFFFF_FFFF);
        }
    }

    [KvmTheory]
    [MemberData(nameof(Modes))]
    public void Lock_cmpxchg16b_stores_as_one_step_when_equal_and_loads_rdx_rax_when_not(TrackingMode mode, bool user)
    {
        var (outcome, notifier, vm) = Run(Guest(a =>
        {
            a.mov(rax, 0x1111UL);
            a.mov(rdx, 0x2222UL);
            a.mov(rbx, 0x3333UL);
            a.mov(rcx, 0x4444UL);
            a.mov(r8, Page);
            a.@lock.cmpxchg16b(__xmmword_ptr[r8 + 0x10]);   // memory holds 1111:2222: stored
            a.setz(__byte_ptr[rdi]);
            a.mov(rax, 0x5555UL);
            a.mov(rdx, 0x6666UL);
            a.@lock.cmpxchg16b(__xmmword_ptr[r8 + 0x10]);   // memory holds 3333:4444 now: fails
            a.setz(__byte_ptr[rdi + 1]);
            a.mov(__qword_ptr[rdi + 8], rax);
            a.mov(__qword_ptr[rdi + 16], rdx);
        }, user), mode, prepare: vm =>
        {
            vm.Memory.WriteUInt64(Page + 0x10, 0x1111);
            vm.Memory.WriteUInt64(Page + 0x18, 0x2222);
        });
        using (vm)
        {
            AssertStopped(outcome);
            Assert.Equal(0x3333UL, vm.Memory.ReadUInt64(Page + 0x10));
            Assert.Equal(0x4444UL, vm.Memory.ReadUInt64(Page + 0x18));
            Assert.Equal(1UL, vm.Memory.ReadUInt64(Results) & 0xFFFF);      // ZF=1, then ZF=0
            Assert.Equal(0x3333UL, vm.Memory.ReadUInt64(Results + 8));       // rdx:rax loaded from memory
            Assert.Equal(0x4444UL, vm.Memory.ReadUInt64(Results + 16));
            var write = Assert.Single(notifier.Writes);
            Assert.Equal((Page + 0x10, "33330000000000004444000000000000"), (write.Gpa, Convert.ToHexString(write.Bytes)));
        }
    }

    [KvmFact]
    public void A_vex_load_from_an_access_trapped_page_fills_the_register()
    {
        var (outcome, notifier, vm) = Run(Guest(a =>
        {
            a.vmovdqu(ymm2, __ymmword_ptr[rbx + 0x100]);
            a.vmovdqu(__ymmword_ptr[rdi], ymm2);
        }, user: true), TrackingMode.TrapAccesses, prepare: vm => vm.Memory.Write(Page + 0x100, Pattern(32, 0x80)));
        using (vm)
        {
            AssertStopped(outcome);
            Assert.Equal(Convert.ToHexString(Pattern(32, 0x80)), Hex(vm, Results, 32));
            Assert.Empty(notifier.Writes);
        }
    }

    [Avx512Fact(atCpl0: false)]
    public void Zmm_and_masked_stores_at_cpl3_complete_when_the_cpu_has_avx512() => ZmmStores(user: true);

    [Avx512Fact(atCpl0: true)]
    public void Zmm_and_masked_stores_at_cpl0_complete_when_the_cpu_has_avx512() => ZmmStores(user: false);

    private static void ZmmStores(bool user)
    {
        var (outcome, notifier, vm) = Run(Guest(a =>
        {
            a.vmovdqu64(zmm1, __zmmword_ptr[rsi]);
            a.vmovdqu64(__zmmword_ptr[rbx + 0x200], zmm1);
            a.mov(eax, 0b1010_0000_0000_0101);
            a.kmovw(k1, eax);
            a.vmovdqu32(__zmmword_ptr[rbx + 0x300].k1, zmm1); // dwords 0, 2, 13 and 15
        }, user, avx512: true), TrackingMode.TrapWrites);
        using (vm)
        {
            AssertStopped(outcome);
            var pattern = Pattern(64, 0x40);
            Assert.Equal(Convert.ToHexString(pattern), Hex(vm, Page + 0x200, 64));
            Assert.Equal(
                [(Page + 0x200, Convert.ToHexString(pattern)), (Page + 0x300, Convert.ToHexString(pattern[..4])), (Page + 0x308, Convert.ToHexString(pattern[8..12])),
                 (Page + 0x334, Convert.ToHexString(pattern[52..56])), (Page + 0x33C, Convert.ToHexString(pattern[60..64]))],
                notifier.Writes.Select(w => (w.Gpa, Convert.ToHexString(w.Bytes))).ToArray());
            Assert.Equal("00000000", Hex(vm, Page + 0x304, 4));
        }
    }

    [KvmFact]
    public void An_unsupported_store_on_a_tracked_page_stops_the_vm_naming_the_instruction()
    {
        // At CPL3: a PVM host emulates CPL0, where no vector instruction runs at all.
        var (outcome, _, vm) = Run(Guest(a =>
        {
            a.vmovdqu(ymm0, __ymmword_ptr[rsi]);
            a.vextracti128(__xmmword_ptr[rbx + 0x10], ymm0, 1);
        }, user: true), TrackingMode.TrapWrites);
        using (vm)
        {
            Assert.Equal(VmExitKind.Fault, outcome.Kind);
            Assert.Equal(VmOutcome.FaultCode, outcome.ExitCode);
            Assert.Contains("vextracti128", outcome.Summary);
            Assert.Contains("0x300010", outcome.Summary);
        }
    }

    private const string Cpl0Emulated = "this KVM (kvm_pvm) runs guest CPL0 through its instruction emulator, which executes no vector instruction at all (tracked page or not); the CPL3 variant covers it";

    /// <summary>Vector code at CPL0: skipped where guest kernel mode is emulated (PVM).</summary>
    public sealed class Cpl0VectorTheoryAttribute : TheoryAttribute
    {
        public Cpl0VectorTheoryAttribute() => Skip = KvmAvailability.SkipReason() ?? ((KvmAvailability.Facts?.EmulatesGuestKernelMode ?? false) ? Cpl0Emulated : null);
    }

    /// <summary>Runs where /dev/kvm is usable and the host CPU has AVX-512 state (else skips, saying which is missing).</summary>
    public sealed class Avx512FactAttribute : FactAttribute
    {
        public Avx512FactAttribute(bool atCpl0) =>
            Skip = KvmAvailability.SkipReason()
                ?? (XsaveLayout.HasAvx512 ? null : "the host CPU has no AVX-512: CPUID leaf 0xD lists no opmask, ZMM_Hi256 and Hi16_ZMM state components")
                ?? (atCpl0 && (KvmAvailability.Facts?.EmulatesGuestKernelMode ?? false) ? Cpl0Emulated : null);
    }

    private sealed class SignalGate : Devices.Bus.IBusDevice
    {
        public readonly ManualResetEventSlim Signalled = new(false);
        public void Read(ulong offset, Span<byte> data) => data.Clear();
        public void Write(ulong offset, ReadOnlySpan<byte> data) => Signalled.Set();
    }
}
