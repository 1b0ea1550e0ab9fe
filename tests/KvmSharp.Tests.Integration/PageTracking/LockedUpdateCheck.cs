using Iced.Intel;
using KvmSharp.Devices.Bus;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Tests.Integration.DirtyLog;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.PageTracking;

/// <summary>The read-modify-write a <see cref="LockedUpdateCheck"/> guest hammers a tracked word with.</summary>
public enum LockedUpdate
{
    /// <summary>lock inc dword [counter]</summary>
    Inc,
    /// <summary>lock add dword [counter], 3</summary>
    Add,
    /// <summary>lock xadd [counter], edx (edx = 1)</summary>
    Xadd,
    /// <summary>a cmpxchg loop: load, +1, lock cmpxchg until it succeeds</summary>
    CompareExchangeLoop,
    /// <summary>a spinlock taken by xchg on the tracked word, guarding a plain increment of an untracked counter</summary>
    ExchangeSpinlock,
    /// <summary>a spinlock taken by lock bts and released by lock btr on the tracked word, guarding an untracked counter</summary>
    BitTestAndSetSpinlock,
    /// <summary>each vCPU sets (lock or) and clears (lock and) its own bit of the shared word and checks it saw its own update</summary>
    OrAndOwnBit,
}

/// <summary>
/// The lost-update check of issue 9 (no xunit, so kvmsharp-bench runs it in the testbed too): N vCPUs
/// at CPL3 (native speed on any KVM) apply one kind of locked read-modify-write to one word of a
/// tracked page <paramref name="iterations"/> times each; afterwards the word (or the counter its
/// spinlock guards) must show every update, and the tracker must have seen one report per write.
/// </summary>
public static class LockedUpdateCheck
{
    public const ulong TrackedPage = 0x300000, Word = TrackedPage + 0x40, LockWord = TrackedPage + 0x80;
    public const ulong UntrackedCounter = 0x400000, ErrorCounter = 0x400008, UserStacks = 0x500000;
    public const ulong DoneGate = 0xD000_0000;

    public sealed record Result(LockedUpdate Update, int Cpus, int Iterations, TrackingMode Mode, ulong Expected, ulong Actual, ulong Errors, long Reports, long ReportsAtWord, TimeSpan Elapsed)
    {
        public bool Passed => Actual == Expected && Errors == 0;

        public override string ToString() =>
            $"{Update} x{Iterations} on {Cpus} vCPUs ({Mode}): expected {Expected}, got {Actual}, own-bit errors {Errors}, {Reports} reports ({ReportsAtWord} at the word), {Elapsed.TotalMilliseconds:0} ms";
    }

    public static Result Run(LockedUpdate update, int cpus, int iterations, TrackingMode mode, TimeSpan? timeout = null)
    {
        using var vm = TestGuest.Create(Image(update, iterations), memory: 8UL << 20, cpus: cpus);
        DirtyWriterGuest.PrepareUserMode(vm.Memory);
        var done = new FinishGate(cpus);
        vm.MmioBus.Register(DoneGate, 0x1000, done, "done-gate");
        var reports = new CountingNotifier();
        vm.PageTracker.Register(reports);
        vm.PageTracker.AddGfn(TrackedPage >> 12, mode);
        var started = DateTime.UtcNow;
        vm.Start();
        bool finished = done.Wait(timeout ?? TimeSpan.FromSeconds(120));
        var elapsed = DateTime.UtcNow - started;
        string? where = finished ? null : vm.DescribeVcpus(TimeSpan.FromSeconds(5));
        vm.Stop("locked-update check finished");
        vm.WaitForExit(TimeSpan.FromSeconds(10), out _);
        if (!finished) throw new TimeoutException($"{update} on {cpus} vCPUs: only {done.Finished} of {cpus} vCPUs finished in {timeout ?? TimeSpan.FromSeconds(120)}; outcome {vm.Outcome}\n{where}");
        if (vm.Outcome is { } outcome && outcome.Kind != VmExitKind.Stopped) throw new InvalidOperationException($"{update}: the VM ended with {outcome}");

        ulong total = (ulong)cpus * (ulong)iterations;
        var (expected, actual) = update switch
        {
            LockedUpdate.Add => (3 * total, (ulong)vm.Memory.ReadUInt32(Word)),
            LockedUpdate.ExchangeSpinlock or LockedUpdate.BitTestAndSetSpinlock => (total, (ulong)vm.Memory.ReadUInt32(UntrackedCounter)),
            LockedUpdate.OrAndOwnBit => (0UL, (ulong)vm.Memory.ReadUInt32(Word)),
            _ => (total, (ulong)vm.Memory.ReadUInt32(Word)),
        };
        return new Result(update, cpus, iterations, mode, expected, actual, vm.Memory.ReadUInt32(ErrorCounter), reports.Reports, reports.ReportsAt(Word), elapsed);
    }

    private static uint ReadUInt32(this Vmm.Memory.GuestPhysicalMemory memory, ulong gpa) => (uint)memory.ReadUInt64(gpa);

    public static GuestImage Image(LockedUpdate update, int iterations) => TestGuest.LongMode(a =>
    {
        var user = a.CreateLabel();
        // CPL0: user segments, then iretq to CPL3 on a per-vCPU stack (rsi = vCPU id).
        UserModeEntry.LoadGdt(a);
        a.mov(rcx, rsi);
        a.shl(rcx, 12);
        a.mov(rax, UserStacks + 0xFF0);
        a.add(rcx, rax);
        UserModeEntry.EnterUserMode(a, user, rcx);

        a.Label(ref user);
        a.mov(rbx, Word);
        a.mov(r8, UntrackedCounter);
        a.mov(r10d, iterations);
        a.mov(ecx, esi);
        a.mov(r9d, 1);
        a.shl(r9d, cl);            // this vCPU's own bit
        var loop = a.CreateLabel();
        var next = a.CreateLabel();
        a.Label(ref loop);
        a.nop(); // the update's own retry label cannot share an instruction with this one
        Emit(a, update, next);
        a.Label(ref next);
        a.dec(r10d);
        a.jnz(loop);
        a.mov(rax, DoneGate);
        a.mov(__dword_ptr[rax + rsi * 8], esi);
        var spin = a.CreateLabel();
        a.Label(ref spin);
        a.pause();
        a.jmp(spin);
    });

    private static void Emit(Assembler a, LockedUpdate update, Label next)
    {
        switch (update)
        {
            case LockedUpdate.Inc:
                a.@lock.inc(__dword_ptr[rbx]);
                break;
            case LockedUpdate.Add:
                a.@lock.add(__dword_ptr[rbx], 3);
                break;
            case LockedUpdate.Xadd:
                a.mov(edx, 1);
                a.@lock.xadd(__dword_ptr[rbx], edx);
                break;
            case LockedUpdate.CompareExchangeLoop:
            {
                var retry = a.CreateLabel();
                a.Label(ref retry);
                a.mov(eax, __dword_ptr[rbx]);
                a.lea(edx, __[rax + 1]);
                a.@lock.cmpxchg(__dword_ptr[rbx], edx);
                a.jnz(retry);
                break;
            }
            case LockedUpdate.ExchangeSpinlock:
            {
                var acquire = a.CreateLabel();
                a.Label(ref acquire);
                a.mov(eax, 1);
                a.xchg(__dword_ptr[rbx + 0x40], eax); // LockWord
                a.test(eax, eax);
                a.jnz(acquire);
                a.inc(__dword_ptr[r8]);
                a.mov(eax, 0);
                a.xchg(__dword_ptr[rbx + 0x40], eax);
                break;
            }
            case LockedUpdate.BitTestAndSetSpinlock:
            {
                var acquire = a.CreateLabel();
                a.Label(ref acquire);
                a.@lock.bts(__dword_ptr[rbx + 0x40], 0);
                a.jc(acquire);
                a.inc(__dword_ptr[r8]);
                a.@lock.btr(__dword_ptr[rbx + 0x40], 0);
                break;
            }
            case LockedUpdate.OrAndOwnBit:
            {
                var error = a.CreateLabel();
                a.@lock.or(__dword_ptr[rbx], r9d);
                a.test(__dword_ptr[rbx], r9d);
                a.jz(error);
                a.mov(r11d, r9d);
                a.not(r11d);
                a.@lock.and(__dword_ptr[rbx], r11d);
                a.test(__dword_ptr[rbx], r9d);
                a.jz(next);
                a.Label(ref error);
                a.@lock.inc(__dword_ptr[r8 + 8]); // ErrorCounter
                break;
            }
        }
    }

    private sealed class FinishGate(int cpus) : IBusDevice
    {
        private readonly CountdownEvent _left = new(cpus);
        private readonly bool[] _seen = new bool[cpus];

        public int Finished => _seen.Count(s => s);

        public bool Wait(TimeSpan timeout) => _left.Wait(timeout);

        public void Read(ulong offset, Span<byte> data) => data.Clear();

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            int vcpu = (int)(offset / 8);
            lock (_seen)
            {
                if (vcpu >= _seen.Length || _seen[vcpu]) return;
                _seen[vcpu] = true;
            }
            _left.Signal();
        }
    }

    private sealed class CountingNotifier : IPageTrackNotifier
    {
        private long _reports, _atWord;

        public long Reports => Interlocked.Read(ref _reports);

        public long ReportsAt(ulong gpa) => gpa == Word ? Interlocked.Read(ref _atWord) : 0;

        public void TrackWrite(ulong gpa, ReadOnlySpan<byte> bytes)
        {
            Interlocked.Increment(ref _reports);
            if (gpa == Word) Interlocked.Increment(ref _atWord);
        }

        public void TrackRemoveRegion(ulong gfn, ulong pageCount)
        {
        }
    }
}
