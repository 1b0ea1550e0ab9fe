using System.Diagnostics;
using Iced.Intel;
using KvmSharp.Devices.Bus;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Tests.Integration.DirtyLog;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.PageTracking;

/// <summary>
/// Instruction-class checks of issue 9 for kvmsharp-bench tracking-check (no xunit, so they run in the
/// testbed too): guests at CPL3 (native on every KVM) doing one store class on a tracked page, each
/// answering ok or what differed; and the cost of a read of a tracked page per mode.
/// </summary>
public static class TrackedStoreCheck
{
    private const ulong Page = 0x300000, Source = 0x400000, Results = 0x401000, UserStack = 0x500FF0, Gate = 0xD000_0000;

    public sealed record Outcome(VmOutcome Vm, IReadOnlyList<RecordingNotifier.Write> Writes, byte[] Page, byte[] Results, TimeSpan BetweenGates);

    /// <summary>Run <paramref name="body"/> at CPL3 (rbx = tracked page, rsi = 64-byte pattern, rdi = results); it writes the gate twice (start, end).</summary>
    public static Outcome RunAtCpl3(Action<Assembler> body, TrackingMode? mode, Action<VirtualMachine>? prepare = null)
    {
        var image = TestGuest.LongMode(a =>
        {
            a.mov(rax, cr4);
            a.or(rax, 1 << 18);              // OSXSAVE
            a.mov(cr4, rax);
            a.xor(ecx, ecx);
            a.xor(edx, edx);
            a.mov(eax, 7);                    // XCR0: x87, SSE, AVX
            a.xsetbv();
            var user = a.CreateLabel();
            UserModeEntry.LoadGdt(a);
            a.mov(rcx, UserStack);
            UserModeEntry.EnterUserMode(a, user, rcx);
            a.Label(ref user);
            a.mov(rsi, Source);
            a.mov(rbx, Page);
            a.mov(rdi, Results);
            a.mov(rax, Gate);
            a.mov(__dword_ptr[rax], 1);
            body(a);
            a.mov(rax, Gate);
            a.mov(__dword_ptr[rax], 2);
            var spin = a.CreateLabel();
            a.Label(ref spin);
            a.pause();
            a.jmp(spin);
        });
        using var vm = TestGuest.Create(image, memory: 8UL << 20);
        DirtyWriterGuest.PrepareUserMode(vm.Memory);
        var gate = new TimingGate();
        vm.MmioBus.Register(Gate, 0x1000, gate, "gate");
        vm.Memory.Write(Source, Enumerable.Range(0, 64).Select(i => (byte)(0x40 + i)).ToArray());
        prepare?.Invoke(vm);
        var notifier = new RecordingNotifier();
        vm.PageTracker.Register(notifier);
        if (mode is { } m) vm.PageTracker.AddGfn(Page >> 12, m);
        vm.Ended += _ => gate.Done.Set();
        vm.Start();
        bool finished = gate.Done.Wait(TimeSpan.FromSeconds(120));
        if (vm.Outcome is null) vm.Stop(finished ? "check done" : "check timed out");
        vm.WaitForExit(TimeSpan.FromSeconds(10), out var outcome);
        var page = new byte[4096];
        var results = new byte[64];
        vm.Memory.Read(Page, page);
        vm.Memory.Read(Results, results);
        return new Outcome(outcome!, notifier.Writes, page, results, gate.Between);
    }

    /// <summary>Why the AVX check cannot run on this CPU, or null (the guest sees the host's vector features).</summary>
    public static string? AvxMissing
    {
        get
        {
            if (!System.Runtime.Intrinsics.X86.Avx.IsSupported) return "this CPU (or the .NET runtime on it) reports no usable AVX";
            using var system = global::KvmSharp.Kvm.KvmSystem.Open();
            var leaf1 = system.GetSupportedCpuid().FirstOrDefault(e => e.function == 1);
            const uint Xsave = 1u << 26, Avx = 1u << 28;
            return (leaf1.ecx & (Xsave | Avx)) == (Xsave | Avx) ? null : $"this KVM's KVM_GET_SUPPORTED_CPUID leaf 1 ecx=0x{leaf1.ecx:x} offers no XSAVE+AVX to guests";
        }
    }

    private static void YmmStore(Assembler a)
    {
        a.vmovdqu(ymm0, __ymmword_ptr[rsi]);
        a.vmovdqu(__ymmword_ptr[rbx + 5], ymm0);
    }

    /// <summary>
    /// Why the ymm check cannot say anything here, or null: the CPU or KVM offers no AVX, or the same
    /// store to an UNtracked page already fails on this KVM (seen in the nested testbed: its L1 KVM under
    /// QEMU TCG ends such a guest with a triple fault), so a failure would not be page tracking's.
    /// </summary>
    public static string? AvxUnusable => s_avxUnusable.Value;

    private static readonly Lazy<string?> s_avxUnusable = new(() =>
        AvxMissing ?? (Expect(RunAtCpl3(YmmStore, mode: null), []) is { } problem ? $"an untracked vmovdqu ymm store already fails on this KVM: {problem}" : null));

    /// <summary>Every instruction-class check in one mode: (name, null when ok, else what differed; "skipped: ..." when the CPU lacks it).</summary>
    public static IEnumerable<(string Name, string? Problem)> StoreClasses(TrackingMode mode)
    {
        string pattern16 = Hex(0x40, 16), pattern32 = Hex(0x40, 32);
        yield return ("16-byte movdqu reported once", Expect(RunAtCpl3(a =>
        {
            a.movdqu(xmm0, __xmmword_ptr[rsi]);
            a.movdqu(__xmmword_ptr[rbx + 3], xmm0);
        }, mode), [(Page + 3, pattern16)]));
        yield return ("vmovdqu ymm store completed and reported once", AvxUnusable is { } missing ? $"skipped: {missing}" : Expect(RunAtCpl3(YmmStore, mode), [(Page + 5, pattern32)]));
        var cx16 = RunAtCpl3(a =>
        {
            a.mov(rax, 1UL);
            a.xor(edx, edx);
            a.mov(rbx, 7UL);
            a.mov(rcx, 8UL);
            a.mov(r8, Page);
            a.@lock.cmpxchg16b(__xmmword_ptr[r8 + 0x20]);   // equal: stores 7:8
            a.@lock.cmpxchg16b(__xmmword_ptr[r8 + 0x20]);   // 7:8 != 1:0: loads rdx:rax
            a.mov(__qword_ptr[rdi], rax);
        }, mode, vm => vm.Memory.WriteUInt64(Page + 0x20, 1));
        yield return ("lock cmpxchg16b: one step, one report, rdx:rax loaded on failure",
            Expect(cx16, [(Page + 0x20, "07000000000000000800000000000000")]) ?? (BitConverter.ToUInt64(cx16.Results) == 7 ? null : $"rax after the failed cmpxchg16b is {BitConverter.ToUInt64(cx16.Results)}, not 7"));
        yield return ("unchanged store after bytes that decode as lock cmpxchg reported", Expect(RunAtCpl3(a =>
        {
            var store = a.CreateLabel();
            a.mov(eax, __dword_ptr[rbx]);
            a.or(ecx, 1);
            a.jmp(store);
            a.db(0xF0, 0x0F, 0xB1, 0x83, 0x00, 0x00);
            a.Label(ref store);
            a.mov(__dword_ptr[rbx], eax);
        }, mode, vm => vm.Memory.WriteUInt64(Page, 0x11223344)), [(Page, "44332211")]));
        if (mode == TrackingMode.TrapAccesses)
        {
            yield return ("failed cmpxchg not reported, successful one reported", Expect(RunAtCpl3(a =>
            {
                a.mov(eax, 5);
                a.mov(ecx, 9);
                a.@lock.cmpxchg(__dword_ptr[rbx + 8], ecx);   // memory holds 7: fails
                a.@lock.cmpxchg(__dword_ptr[rbx + 8], ecx);   // eax = 7 now: succeeds
            }, mode, vm => vm.Memory.WriteUInt64(Page + 8, 7)), [(Page + 8, "09000000")]));
        }
    }

    /// <summary>Nanoseconds per read of the tracked page at CPL3 (mode null: untracked).</summary>
    public static double ReadCost(TrackingMode? mode, int reads)
    {
        var run = RunAtCpl3(a =>
        {
            var loop = a.CreateLabel();
            a.mov(ecx, reads);
            a.Label(ref loop);
            a.mov(rdx, __qword_ptr[rbx + 0x100]);
            a.dec(ecx);
            a.jnz(loop);
        }, mode);
        if (run.Vm.Kind != VmExitKind.Stopped) throw new InvalidOperationException($"read-cost guest ended with {run.Vm}");
        return run.BetweenGates.TotalMilliseconds * 1e6 / reads;
    }

    private static string Hex(byte first, int length) => Convert.ToHexString(Enumerable.Range(0, length).Select(i => (byte)(first + i)).ToArray());

    private static string? Expect(Outcome run, (ulong Gpa, string Bytes)[] expected)
    {
        if (run.Vm.Kind != VmExitKind.Stopped)
            return $"the VM ended: {run.Vm.Summary} [{string.Join(" | ", (run.Vm.Report ?? "").Split('\n').Where(l => l.Contains("rip") || l.Contains("=>")).Take(3).Select(l => l.Trim()))}]";
        var actual = run.Writes.Select(w => (w.Gpa, Convert.ToHexString(w.Bytes))).ToArray();
        if (actual.SequenceEqual(expected)) return null;
        return $"reported [{string.Join(", ", actual.Select(w => $"0x{w.Gpa:x}+{w.Item2.Length / 2}: {w.Item2}"))}], expected [{string.Join(", ", expected.Select(w => $"0x{w.Gpa:x}+{w.Bytes.Length / 2}: {w.Bytes}"))}]";
    }

    private sealed class TimingGate : IBusDevice
    {
        public readonly ManualResetEventSlim Done = new(false);
        private long _start, _end;

        public TimeSpan Between => Stopwatch.GetElapsedTime(_start, _end);

        public void Read(ulong offset, Span<byte> data) => data.Clear();

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            if (data[0] == 1) _start = Stopwatch.GetTimestamp();
            else
            {
                _end = Stopwatch.GetTimestamp();
                Done.Set();
            }
        }
    }
}
