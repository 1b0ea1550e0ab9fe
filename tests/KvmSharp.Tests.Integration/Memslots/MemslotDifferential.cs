using System.Diagnostics;
using System.Text;
using CsCheck;
using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Memory.Regions;

namespace KvmSharp.Tests.Integration.Memslots;

/// <summary>A step where KvmSharp and the kernel disagreed, or where KvmSharp's kernel view is wrong.</summary>
public sealed class DifferentialFailure(string message) : Exception(message);

/// <summary>
/// The memslot differential: every request goes straight to a reference VM (the kernel's verdict)
/// and through KvmSharp's production stack (MemslotTable → CarvedMemslotBackend → a recorder →
/// KvmMemslotBackend) on a second VM, mixed with page tracking (AddGfn/RemoveGfn, notifiers,
/// trapped writes) and injected kernel refusals. After every step: verdicts and errnos equal; the
/// model equals the reference's slots; tracking counts and notifications equal an independent
/// model; KernelSlotLayout.Verify holds for the production VM's kernel view as recorded from the
/// calls made; and the production kernel is probed (KVM_GET_DIRTY_LOG for each piece's logging,
/// the piece re-issued as a no-op, and a CREATE at its first and last page refused with EEXIST).
/// At the end of a sequence both kernels are emptied slot by slot, each DELETE proving the id
/// existed, and a CREATE over the whole area proving nothing else was there.
/// </summary>
public sealed class MemslotDifferential : IDisposable
{
    private const ulong Page = 4096;
    private const int HostPages = 48;
    private const int GpaPages = 24;
    private const ulong FillGpa = 0x1_0000_0000; // fill slots live here, away from the generated ranges
    private const int SmallIds = 6;
    private static readonly TimeSpan MinimizeBudget = TimeSpan.FromSeconds(60);
    private static readonly int[] InjectedErrnos = [Errno.ENOMEM, Errno.EFAULT, Errno.EINVAL, Errno.EEXIST];

    private readonly KvmSystem _system;
    private readonly GuestMemoryRegion _host;
    private readonly ulong[] _probeBitmap = new ulong[1024];

    public MemslotDifferential(KvmSystem system)
    {
        _system = system;
        using var vm = system.CreateVm();
        Limits = MemslotLimitsProbe.Read(vm);
        _host = GuestMemoryRegion.CreateAnonymous(HostPages * Page, "differential");
    }

    public MemslotLimits Limits { get; }

    public long Steps { get; private set; }
    public long SequencesRun { get; private set; }
    public long ProductionKernelCalls { get; private set; }
    public long Coarsenings { get; private set; }
    public Dictionary<string, long> Verdicts { get; } = [];

    private readonly Stopwatch _stepTime = new(), _checkTime = new(), _setupTime = new();

    public void Dispose() => _host.Dispose();

    /// <summary>Sequences of up to <paramref name="maxLength"/> steps; one in <paramref name="fillOneIn"/> (0: none) starts with the ids nearly all used.</summary>
    public static Gen<DiffSequence> Sequences(int maxLength, int fillOneIn)
    {
        var kind = Gen.Frequency(
            (10, DiffOpKind.Request), (12, DiffOpKind.Variant), (6, DiffOpKind.AddGfn), (4, DiffOpKind.RemoveGfn),
            (1, DiffOpKind.Register), (1, DiffOpKind.Unregister), (3, DiffOpKind.Write), (1, DiffOpKind.FailNext));
        var number = Gen.Int[0, 1 << 16];
        var op = Gen.Select(kind, number, number, number, number, (k, a, b, c, d) => new DiffOp(k, a, b, c, d));
        return Gen.Select(op.Array[1, maxLength], Gen.Bool, Gen.Int[0, Math.Max(0, fillOneIn - 1)], Gen.Int[0, 3],
            (ops, allowMove, fill, leave) => new DiffSequence(ops, allowMove, fill == 0 && fillOneIn > 0 ? leave : -1));
    }

    /// <summary>Runs sequences until at least <paramref name="minimumSteps"/> steps ran; a failure is shrunk by CsCheck and thrown with the minimal sequence.</summary>
    public void Run(long minimumSteps, int maxLength, int fillOneIn, Action<string>? log, string? seed = null)
    {
        var gen = Sequences(maxLength, fillOneIn);
        while (Steps < minimumSteps)
        {
            long iterations = Math.Max(1, (minimumSteps - Steps) / Math.Max(1, maxLength / 2));
            gen.Sample(RunSequence, writeLine: log, seed: seed, iter: iterations, threads: 1, print: sequence => sequence.ToString());
            seed = null;
        }
    }

    /// <summary>
    /// One sequence on two fresh VMs. On a failure, steps are dropped one at a time for as long as
    /// the rest still fails (each try on fresh VMs), and the <see cref="DifferentialFailure"/> thrown
    /// names the minimal sequence, its failing step and what each step did.
    /// </summary>
    public void RunSequence(DiffSequence sequence)
    {
        try
        {
            RunOnce(sequence);
        }
        catch (DifferentialFailure first)
        {
            var ops = sequence.Ops.ToList();
            var failure = first;
            var budget = Stopwatch.StartNew(); // a fill sequence costs seconds per try: minimize for a minute at most
            for (bool dropped = true; dropped && budget.Elapsed < MinimizeBudget;)
            {
                dropped = false;
                for (int i = ops.Count - 1; i >= 0 && ops.Count > 1 && budget.Elapsed < MinimizeBudget; i--)
                {
                    var fewer = ops.Where((_, k) => k != i).ToList();
                    try
                    {
                        RunOnce(sequence with { Ops = [.. fewer] });
                    }
                    catch (DifferentialFailure smaller)
                    {
                        (ops, failure, dropped) = (fewer, smaller, true);
                    }
                }
            }
            throw new DifferentialFailure($"minimal failing sequence ({ops.Count} of {sequence.Ops.Length} steps): {sequence with { Ops = [.. ops] }}\n{failure.Message}");
        }
    }

    private void RunOnce(DiffSequence sequence)
    {
        _setupTime.Start();
        using var run = new SequenceRun(this, sequence);
        SequencesRun++;
        run.Start();
        _setupTime.Stop();
        for (int i = 0; i < sequence.Ops.Length; i++)
        {
            try
            {
                run.Step(sequence.Ops[i]);
            }
            catch (Exception e) when (e is DifferentialFailure or KvmException or InvalidOperationException or ArgumentException)
            {
                string what = e is DifferentialFailure ? e.Message : $"KvmSharp threw {e.GetType().Name}: {e.Message}";
                throw new DifferentialFailure($"step {i} {sequence.Ops[i]}: {what}\n  what ran:\n    {string.Join("\n    ", run.Trace)}");
            }
            Steps++;
        }
        _setupTime.Start();
        try
        {
            run.Finish();
        }
        catch (DifferentialFailure e)
        {
            throw new DifferentialFailure($"at the end: {e.Message}\n  what ran:\n    {string.Join("\n    ", run.Trace)}");
        }
        _setupTime.Stop();
    }

    private void Count(string verdict) => Verdicts[verdict] = Verdicts.GetValueOrDefault(verdict) + 1;

    public string Summary() =>
        $"{Steps} steps in {SequencesRun} sequences (steps {_stepTime.Elapsed.TotalSeconds:F1} s, checks {_checkTime.Elapsed.TotalSeconds:F1} s, VMs and final checks {_setupTime.Elapsed.TotalSeconds:F1} s); " +
        $"production kernel calls {ProductionKernelCalls}; coarsened carvings seen {Coarsenings}; " +
        string.Join(", ", Verdicts.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value}"));

    private sealed class CountingNotifier : IPageTrackNotifier
    {
        public readonly List<(ulong Gfn, ulong Pages)> Removals = [];
        public readonly List<ulong> Writes = [];
        public void TrackWrite(ulong gpa, ReadOnlySpan<byte> bytes) => Writes.Add(gpa);
        public void TrackRemoveRegion(ulong gfn, ulong pageCount) => Removals.Add((gfn, pageCount));
    }

    private sealed class SequenceRun : IDisposable
    {
        private readonly MemslotDifferential _d;
        private readonly DiffSequence _sequence;
        private readonly KvmVm _reference;
        private readonly KvmVm _production;
        private readonly KernelSlotRecorder _recorder;
        private readonly FaultInjectingBackend _faults;
        private readonly CarvedMemslotBackend _carved;
        private readonly MemslotTable _table;
        private readonly PageTracker _tracker;
        private readonly CountingNotifier _notifier = new();
        private readonly Dictionary<uint, Memslot> _expected = [];           // the reference kernel's slots
        private readonly Dictionary<(uint Slot, ulong Gfn), int> _counts = []; // the expected write-track counts
        private readonly HashSet<uint> _fill = [];
        private readonly List<(ulong, ulong)> _expectedRemovals = [];
        private readonly List<ulong> _expectedWrites = [];
        private bool _registered;

        /// <summary>Each step as it was interpreted, for the report of a failing sequence.</summary>
        public List<string> Trace { get; } = [];

        public SequenceRun(MemslotDifferential d, DiffSequence sequence)
        {
            _d = d;
            _sequence = sequence;
            _reference = d._system.CreateVm();
            _production = d._system.CreateVm();
            _recorder = new KernelSlotRecorder(new KvmMemslotBackend(_production));
            _faults = new FaultInjectingBackend(_recorder);
            _carved = new CarvedMemslotBackend(_faults, d.Limits);
            _table = new MemslotTable(d.Limits, _carved);
            _tracker = new PageTracker(_table, _carved, new NoVcpuQuiescer(), new PageTrackOptions { AllowMoveWithNotifiers = sequence.AllowMoveWithNotifiers, DefaultMode = TrackingMode.TrapWrites });
        }

        private MemslotLimits Limits => _d.Limits;
        private ulong HostBase => _d._host.HostAddress;

        public void Dispose()
        {
            _d.ProductionKernelCalls += _recorder.Calls;
            _reference.Dispose();
            _production.Dispose();
        }

        // Every id but the first 2 + FillLeavingFree taken by one-page slots, so tracking must coarsen
        // to fit; requests on the top ids then change or delete fill slots.
        public void Start()
        {
            if (_sequence.FillLeavingFree < 0) return;
            int first = 2 + _sequence.FillLeavingFree;
            for (int i = 0; i < Limits.SlotsPerAddressSpace - first; i++)
            {
                var request = MemslotRequest.Create((ushort)(first + i), FillGpa + ((ulong)i * Page), Page, HostBase);
                var verdict = _table.TryApply(request);
                int kernel = _reference.TrySetUserMemoryRegion1(request.ToKernel());
                if (!verdict.Accepted || kernel != 0)
                    throw new DifferentialFailure($"fill slot {i}: KvmSharp {Errno.Name(verdict.Errno)} ({verdict.Reason}), kernel {Errno.Name(-kernel)}");
                _expected[request.Slot] = verdict.New!.Value;
                _fill.Add(request.Slot);
            }
            // Two slots on the free ids with three tracked runs need more ids than are left: the carving coarsens.
            Apply(MemslotRequest.Create(0, 0, 4 * Page, HostBase));
            Apply(MemslotRequest.Create(1, 8 * Page, 4 * Page, HostBase + (4 * Page)));
            foreach (ulong gfn in new ulong[] { 1, 3, 9 }) ChangeCount(gfn, +1);
            if (_carved.CoarsenedSlots == 0) throw new DifferentialFailure("the fill prelude did not coarsen any carving");
        }

        public void Step(DiffOp op)
        {
            _d._stepTime.Start();
            _faults.Fired = false;
            switch (op.Kind)
            {
                case DiffOpKind.Request: Apply(RandomRequest(op)); break;
                case DiffOpKind.Variant: Apply(Variant(op) ?? RandomRequest(op)); break;
                case DiffOpKind.AddGfn: ChangeCount(PickGfnToAdd(op), +1); break;
                case DiffOpKind.RemoveGfn: ChangeCount(PickGfnToRemove(op), -1); break;
                case DiffOpKind.Register:
                    Trace.Add("Register");
                    if (!_registered) _tracker.Register(_notifier);
                    _registered = true;
                    _d.Count("Register");
                    break;
                case DiffOpKind.Unregister:
                    Trace.Add("Unregister");
                    if (_registered) _tracker.Unregister(_notifier);
                    _registered = false;
                    _d.Count("Unregister");
                    break;
                case DiffOpKind.Write: Write(op); break;
                case DiffOpKind.ExactRequest: Apply(op.Exact with { UserspaceAddr = op.Exact.UserspaceAddr + HostBase }); break;
                case DiffOpKind.ExactAddGfn: ChangeCount((ulong)op.A, +1); break;
                case DiffOpKind.FailNext:
                    _faults.Arm(1 + (op.A % 6), InjectedErrnos[op.B % InjectedErrnos.Length]);
                    Trace.Add($"the kernel call {1 + (op.A % 6)} from now fails with {Errno.Name(InjectedErrnos[op.B % InjectedErrnos.Length])}");
                    _d.Count("FailNext");
                    break;
            }
            _d._stepTime.Stop();
            _d._checkTime.Start();
            Check(op);
            _d._checkTime.Stop();
        }

        // ---- requests --------------------------------------------------------------------

        private void Apply(MemslotRequest request)
        {
            Trace.Add($"KVM_SET_USER_MEMORY_REGION {request}");
            var kernelBefore = _recorder.Slots().ToList();
            var modelBefore = _table.Current;
            var verdict = _table.TryApply(request);
            if (_faults.Fired && !verdict.Accepted)
            {
                // An injected refusal: the request is refused with that errno and nothing changed.
                ExpectUnchanged(kernelBefore, modelBefore, $"{request} refused by an injected {Errno.Name(verdict.Errno)}");
                _d.Count("injected-refusal");
                return;
            }

            int kernel = _reference.TrySetUserMemoryRegion1(request.ToKernel());
            int kernelErrno = kernel < 0 ? -kernel : 0;
            var old = _expected.TryGetValue(request.Slot, out var existing) ? existing : (Memslot?)null;
            if (verdict.Errno != kernelErrno)
            {
                bool moveRefusedForNotifiers = kernelErrno == 0 && verdict.Kind == MemslotChangeKind.Move && verdict.Errno == Errno.EINVAL
                    && _registered && !_sequence.AllowMoveWithNotifiers && old is { } moved;
                if (!moveRefusedForNotifiers)
                    throw new DifferentialFailure($"{request}: KvmSharp says {Errno.Name(verdict.Errno)} ({verdict.Kind}, {verdict.Reason}), the kernel {Errno.Name(kernelErrno)}");
                // The page-track rule (no MOVE while notifiers are registered): move the reference back.
                var back = new MemslotRequest(old!.Value.PackedSlot, old.Value.Flags, old.Value.GuestPhysAddr, old.Value.Size, old.Value.HostAddress);
                if (_reference.TrySetUserMemoryRegion1(back.ToKernel()) != 0) throw new DifferentialFailure("could not move the reference slot back");
                ExpectUnchanged(kernelBefore, modelBefore, $"{request} refused for notifiers");
                _d.Count("move-refused-for-notifiers");
                return;
            }
            _d.Count(verdict.Accepted ? verdict.Kind.ToString() : Errno.Name(verdict.Errno));
            if (request.AddressSpace == 1 && verdict.Accepted) _d.Count($"as1-{verdict.Kind}");
            if (!verdict.Accepted)
            {
                ExpectUnchanged(kernelBefore, modelBefore, $"{request} refused with {Errno.Name(verdict.Errno)}");
                return;
            }
            if (verdict.Kind == MemslotChangeKind.None) return;

            _fill.Remove(request.Slot); // a fill slot a request changed is an ordinary slot from now on
            if (request.MemorySize == 0) _expected.Remove(request.Slot);
            else _expected[request.Slot] = new Memslot(request.Id, (ushort)request.AddressSpace, request.GuestPhysAddr, request.MemorySize, request.UserspaceAddr, request.Flags);
            if (verdict.Kind is MemslotChangeKind.Delete or MemslotChangeKind.Move && old is { } gone)
            {
                foreach (var key in _counts.Keys.Where(k => k.Slot == request.Slot).ToList()) _counts.Remove(key);
                if (_registered) // DELETE always, MOVE only when allowed with notifiers
                    _expectedRemovals.Add((gone.BaseGfn, gone.PageCount));
            }
        }

        private MemslotRequest RandomRequest(DiffOp op)
        {
            int limit = Limits.SlotsPerAddressSpace;
            ushort id = (op.A % 10) switch
            {
                < 5 => (ushort)(op.B % SmallIds),
                < 8 => (ushort)(limit - 1 - (op.B % SmallIds)),
                _ => (ushort)(limit + (op.B % 3)),
            };
            ushort addressSpace = (op.C % 16) switch { 0 or 1 or 2 or 3 => 1, 4 => 2, _ => 0 };
            ulong gpa = (op.D % 30) switch
            {
                0 => (ulong)(1 + (op.D % 4095)),
                1 => ulong.MaxValue - 4095,
                2 => (Limits.MaxGfn + 1 - (ulong)((op.D >> 5) % 3)) << Memslot.PageShift,
                _ => (ulong)((op.D >> 5) % GpaPages) * Page,
            };
            ulong size = ((op.A >> 4) % 12) switch
            {
                0 => 0,
                1 => (ulong)(1 + ((op.A >> 8) % 4095)),
                _ => (ulong)(1 + ((op.A >> 8) % 4)) * Page,
            };
            ulong hva = ((op.B >> 4) % 30) switch
            {
                0 => HostBase + 1,
                1 => Limits.UserAddressLimit - Page,
                _ => HostBase + ((ulong)((op.B >> 8) % (HostPages - 4)) * Page),
            };
            uint flags = ((op.C >> 4) % 10) switch
            {
                0 => 1u << (2 + ((op.C >> 8) % 30)),
                1 or 2 => KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES,
                3 => KvmMemFlags.KVM_MEM_READONLY,
                4 => KvmMemFlags.KVM_MEM_READONLY | KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES,
                _ => 0,
            };
            return new MemslotRequest(MemslotRequest.Pack(id, addressSpace), flags, gpa, size, hva);
        }

        private List<Memslot> Listed() => _expected.Values.Where(s => !_fill.Contains(s.PackedSlot)).OrderBy(s => s.PackedSlot).ToList();

        private MemslotRequest? Variant(DiffOp op)
        {
            var slots = Listed();
            if (slots.Count == 0) return null;
            var slot = slots[op.A % slots.Count];
            var same = new MemslotRequest(slot.PackedSlot, slot.Flags, slot.GuestPhysAddr, slot.Size, slot.HostAddress);
            uint log = KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES;
            ulong somewhere = (ulong)(op.C % GpaPages) * Page;
            var other = slots[op.C % slots.Count];
            return (op.B % 12) switch
            {
                0 => same,
                1 or 2 => same with { Flags = slot.Flags ^ log },
                3 => same with { GuestPhysAddr = somewhere },
                4 or 5 => same with { GuestPhysAddr = somewhere, Flags = slot.Flags ^ log }, // MOVE and FLAGS in one request
                6 => MemslotRequest.Delete(slot.Id, slot.AddressSpace),
                7 => same with { MemorySize = slot.Size + Page },
                8 => same with { UserspaceAddr = slot.HostAddress + Page },
                9 => same with { Flags = slot.Flags ^ KvmMemFlags.KVM_MEM_READONLY },
                10 => same with { GuestPhysAddr = other.GuestPhysAddr + ((op.D & 1) == 0 ? other.Size : 0) - ((op.D & 2) == 0 ? 0 : slot.Size), Flags = slot.Flags ^ ((op.D & 4) == 0 ? 0 : log) }, // adjacent or overlapping
                _ => same with { GuestPhysAddr = (Limits.MaxGfn + 1 - slot.PageCount + (ulong)(op.D % 2)) << Memslot.PageShift }, // the top gfn, or one past it
            };
        }

        // ---- tracking --------------------------------------------------------------------

        private ulong PickGfnToAdd(DiffOp op)
        {
            var slots = Listed();
            if (slots.Count == 0 || op.C % 10 == 0) return (ulong)(op.D % (GpaPages + 4));
            var slot = slots[op.A % slots.Count];
            return slot.BaseGfn + (ulong)op.B % slot.PageCount;
        }

        private ulong PickGfnToRemove(DiffOp op)
        {
            var tracked = _counts.Keys.Select(k => k.Gfn).Distinct().Order().ToList();
            if (tracked.Count == 0 || op.C % 10 == 0) return (ulong)(op.D % (GpaPages + 4));
            return tracked[op.A % tracked.Count];
        }

        private void ChangeCount(ulong gfn, int delta)
        {
            Trace.Add($"{(delta > 0 ? "AddGfn" : "RemoveGfn")}(0x{gfn:x})");
            var covering = _expected.Values.Where(s => s.ContainsGfn(gfn)).ToList();
            var changing = delta > 0 ? covering : covering.Where(s => _counts.ContainsKey((s.PackedSlot, gfn))).ToList();
            int expectedErrno = covering.Count == 0 ? Errno.EINVAL : changing.Count == 0 ? Errno.ERANGE : 0;
            var kernelBefore = _recorder.Slots().ToList();
            var modelBefore = _table.Current;
            int errno = 0;
            string? message = null;
            try
            {
                if (delta > 0) _tracker.AddGfn(gfn);
                else _tracker.RemoveGfn(gfn);
            }
            catch (PageTrackException e)
            {
                errno = e.Errno;
                message = e.Message;
            }
            string what = $"{(delta > 0 ? "AddGfn" : "RemoveGfn")}(0x{gfn:x})";
            if (_faults.Fired && errno != 0)
            {
                ExpectUnchanged(kernelBefore, modelBefore, $"{what} refused by an injected {Errno.Name(errno)}");
                _d.Count("injected-refusal");
                return;
            }
            if (errno != expectedErrno)
                throw new DifferentialFailure($"{what}: KvmSharp says {Errno.Name(errno)} ({message}), expected {Errno.Name(expectedErrno)}");
            _d.Count($"{(delta > 0 ? "AddGfn" : "RemoveGfn")}-{(errno == 0 ? "ok" : Errno.Name(errno))}");
            if (errno != 0) return;
            foreach (var slot in changing)
            {
                var key = (slot.PackedSlot, gfn);
                int count = _counts.GetValueOrDefault(key) + delta;
                if (count == 0) _counts.Remove(key);
                else _counts[key] = count;
            }
        }

        private unsafe void Write(DiffOp op)
        {
            var slots = Listed().Where(s => (s.Flags & KvmMemFlags.KVM_MEM_READONLY) == 0 && s.HostAddress >= HostBase && s.HostAddress + s.Size <= HostBase + (HostPages * Page)).ToList();
            if (slots.Count == 0) return;
            var slot = slots[op.A % slots.Count];
            ulong gpa = slot.GuestPhysAddr + ((ulong)op.B % slot.Size & ~7UL);
            ulong value = (uint)op.C | ((ulong)(uint)op.D << 32);
            Span<byte> data = stackalloc byte[8];
            BitConverter.TryWriteBytes(data, value);
            Trace.Add($"guest write 0x{value:x} at 0x{gpa:x} (as {slot.AddressSpace})");
            bool handled = _tracker.HandleTrappedAccess(0, slot.AddressSpace, gpa, data, isWrite: true);
            if (!handled) throw new DifferentialFailure($"a write to RAM at 0x{gpa:x} (as {slot.AddressSpace}) was not handled");
            if (*(ulong*)slot.HostAddressOf(gpa) != value) throw new DifferentialFailure($"a write to 0x{gpa:x} did not reach memory");
            bool tracked = _counts.ContainsKey((slot.PackedSlot, gpa >> Memslot.PageShift));
            if (tracked && _registered) _expectedWrites.Add(gpa);
            _d.Count(tracked ? "write-tracked" : "write-untracked");
        }

        // ---- checks ----------------------------------------------------------------------

        // A refusal changes nothing the user can see: the model, the counts (checked next) and what
        // every gfn maps to. Kernel-internal choices may differ (a piece on another id, a carving
        // made coarser to free an id); KernelSlotLayout.Verify still checks them after the step.
        private void ExpectUnchanged(List<KernelSlotPiece> kernelBefore, MemslotSnapshot modelBefore, string what)
        {
            if (!ReferenceEquals(_table.Current, modelBefore)) throw new DifferentialFailure($"{what}, yet the model changed");
            var after = _recorder.Slots().ToList();
            if (_carved.CoarsenedSlots == 0 && (after.Count != kernelBefore.Count || after.Select(Shape).Except(kernelBefore.Select(Shape)).Any()))
                throw new DifferentialFailure($"{what}, yet the kernel's slots changed: before [{string.Join("; ", kernelBefore.Select(Describe))}], after [{string.Join("; ", after.Select(Describe))}]");
        }

        private static (ushort, ulong, ulong, ulong, uint) Shape(KernelSlotPiece p) => (p.AddressSpace, p.GuestPhysAddr, p.Size, p.HostAddress, p.Flags);

        private void Check(DiffOp op)
        {
            // The model is the reference kernel's slot set.
            var model = _table.Current.AllSlots().Where(s => !_fill.Contains(s.PackedSlot)).ToList();
            var expected = Listed();
            if (model.Count != expected.Count || model.Except(expected).Any())
                throw new DifferentialFailure($"model [{string.Join("; ", model)}] is not the kernel's [{string.Join("; ", expected)}]");

            // Tracking counts equal the independent count model.
            var tracked = _tracker.TrackedGfns;
            int trackedGfns = tracked.Values.Sum(g => g.Count);
            if (trackedGfns != _counts.Count)
                throw new DifferentialFailure($"the tracker tracks {trackedGfns} (slot, gfn) pairs, expected {_counts.Count}");
            foreach (var ((slot, gfn), count) in _counts)
            {
                int actual = _tracker.Count(gfn, (int)(slot >> 16));
                if (actual != count) throw new DifferentialFailure($"gfn 0x{gfn:x} in slot {(ushort)slot} (as {slot >> 16}) has count {actual}, expected {count}");
            }
            if (!_notifier.Removals.SequenceEqual(_expectedRemovals))
                throw new DifferentialFailure($"TrackRemoveRegion calls [{string.Join(", ", _notifier.Removals)}], expected [{string.Join(", ", _expectedRemovals)}]");
            if (!_notifier.Writes.SequenceEqual(_expectedWrites))
                throw new DifferentialFailure($"TrackWrite calls [{string.Join(", ", _notifier.Writes.Select(g => $"0x{g:x}"))}], expected [{string.Join(", ", _expectedWrites.Select(g => $"0x{g:x}"))}]");

            // The production VM's kernel view, as recorded from the calls made.
            var kernel = _recorder.Slots().Where(p => !_fill.Contains(p.PackedSlot) || p.GuestPhysAddr < FillGpa).ToList();
            var unlisted = _fill.Count == 0 ? null : new Dictionary<ushort, int> { [0] = _fill.Count };
            var problems = KernelSlotLayout.Verify(model, s => tracked.TryGetValue(s.PackedSlot, out var g) ? g : [],
                s => _carved.PiecesOf(s.Id, s.AddressSpace), kernel, _carved.KernelSlotCount, Limits.SlotsPerAddressSpace, unlisted);
            if (_faults.Fired) problems.RemoveAll(p => p.Contains("coarser than needed", StringComparison.Ordinal)); // a refused re-carve stays coarse until the next change
            if (problems.Count > 0) throw new DifferentialFailure("kernel view: " + string.Join(" | ", problems));
            if (_carved.CoarsenedSlots > 0) _d.Coarsenings++;

            // The production kernel itself agrees, for every piece that is not a fill slot.
            var probeIds = new Dictionary<ushort, int>();
            foreach (var piece in kernel)
            {
                if (!probeIds.TryGetValue(piece.AddressSpace, out int probeId)) probeIds[piece.AddressSpace] = probeId = FreeId(piece.AddressSpace);
                ProbeHolds(_production, piece, probeId);
            }
        }

        private int FreeId(ushort addressSpace)
        {
            for (int id = 0; id < Limits.SlotsPerAddressSpace; id++)
                if (!_recorder.Holds(MemslotRequest.Pack((ushort)id, addressSpace))) return id;
            return -1; // every id is in use: no probe slot can be made
        }

        // Non-destructive: logging as recorded, the same request is a no-op (size, hva, read-only and,
        // since its first and last pages are taken, gpa all equal), and both end pages are covered.
        private void ProbeHolds(KvmVm vm, KernelSlotPiece piece, int probeId)
        {
            bool logs = (piece.Flags & KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES) != 0;
            if (piece.Size / Page > (ulong)_d._probeBitmap.Length * 64)
                throw new DifferentialFailure($"{Describe(piece)} is larger than the generator makes slots");
            int log = vm.TryGetDirtyLog(piece.PackedSlot, _d._probeBitmap);
            if (logs ? log != 0 : log != -Errno.ENOENT)
                throw new DifferentialFailure($"KVM_GET_DIRTY_LOG of {Describe(piece)} returned {Errno.Name(-log)}: the kernel's logging flag is not the recorded one");
            if (probeId >= 0)
            {
                ExpectCovered(vm, piece.GuestPhysAddr, piece.AddressSpace, probeId, piece);
                ExpectCovered(vm, piece.GuestPhysAddr + piece.Size - Page, piece.AddressSpace, probeId, piece);
            }
            int same = vm.TrySetUserMemoryRegion(piece.ToKernel());
            if (same != 0) throw new DifferentialFailure($"re-issuing {Describe(piece)} returned {Errno.Name(-same)}: the kernel does not hold it");
        }

        private void ExpectCovered(KvmVm vm, ulong gpa, ushort addressSpace, int probeId, KernelSlotPiece piece)
        {
            var probe = new MemslotRequest(MemslotRequest.Pack((ushort)probeId, addressSpace), 0, gpa, Page, HostBase);
            int result = vm.TrySetUserMemoryRegion(probe.ToKernel());
            if (result == -Errno.EEXIST) return;
            if (result == 0) vm.TrySetUserMemoryRegion(MemslotRequest.Delete((ushort)probeId, addressSpace).ToKernel());
            throw new DifferentialFailure($"a probe slot at gpa 0x{gpa:x} (as {addressSpace}) got {Errno.Name(-result)}, not EEXIST: nothing covers that page of {Describe(piece)}");
        }

        // Destructive, at the end: every expected slot is deleted (proving its id existed), then
        // nothing may be left anywhere a slot was generated.
        public void Finish()
        {
            _faults.Disarm();
            Empty(_production, _recorder.Slots().ToList(), "production");
            Empty(_reference, _expected.Values.Select(s => new KernelSlotPiece(s.Id, s.AddressSpace, s.GuestPhysAddr, s.Size, s.HostAddress, s.Flags)).ToList(), "reference");
        }

        private void Empty(KvmVm vm, List<KernelSlotPiece> slots, string which)
        {
            foreach (var slot in slots.Where(s => !_fill.Contains(s.PackedSlot)))
            {
                int result = vm.TrySetUserMemoryRegion(slot.ToKernelDelete());
                if (result != 0) throw new DifferentialFailure($"{which}: deleting {Describe(slot)} returned {Errno.Name(-result)}");
            }
            // Fill slots are left to the VM's close (32,764 DELETEs cost seconds), and their area is not probed.
            var areas = new List<(ulong Gpa, ulong Size)> { (0, 256 * Page), ((Limits.MaxGfn + 1 - 64) << Memslot.PageShift, 64 * Page) };
            for (ushort space = 0; space < Limits.AddressSpaces; space++)
            {
                foreach (var (gpa, size) in areas)
                {
                    int probeId = Enumerable.Range(0, Limits.SlotsPerAddressSpace).First(id => !slots.Any(s => s.AddressSpace == space && s.KernelId == id && _fill.Contains(s.PackedSlot)));
                    var probe = MemslotRequest.Create((ushort)probeId, gpa, size, HostBase, 0, space);
                    int result = vm.TrySetUserMemoryRegion(probe.ToKernel());
                    if (result != 0) throw new DifferentialFailure($"{which}: after deleting every slot, a slot over gpa 0x{gpa:x}+0x{size:x} (as {space}) got {Errno.Name(-result)}: the kernel holds a slot nobody recorded");
                    vm.TrySetUserMemoryRegion(MemslotRequest.Delete((ushort)probeId, space).ToKernel());
                }
            }
        }

        private static string Describe(KernelSlotPiece p) =>
            $"kernel slot {p.KernelId} (as {p.AddressSpace}) gpa 0x{p.GuestPhysAddr:x}+0x{p.Size:x} hva 0x{p.HostAddress:x} flags 0x{p.Flags:x}";
    }
}
