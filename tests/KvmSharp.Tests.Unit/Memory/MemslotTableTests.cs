using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using Xunit;

namespace KvmSharp.Tests.Unit.Memory;

/// <summary>
/// MemslotTable: a refusal of any origin (rules, observer veto, kernel) leaves the published snapshot,
/// its generation and the kernel's slots untouched; accepted changes reach the kernel first and are
/// published and committed afterwards.
/// </summary>
public sealed class MemslotTableTests
{
    private const ulong Page = 0x1000;
    private const ulong Hva = 0x7f00_0000_0000;
    private const uint LogDirty = KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES;

    private readonly FakeMemslotBackend _kernel = new();
    private readonly MemslotTable _table;

    // Slot 1: gfns 0x100..0x10f; slot 2: gfns 0x200..0x203 with dirty logging.
    private static readonly MemslotRequest Slot1 = MemslotRequest.Create(1, 0x10_0000, 16 * Page, Hva);
    private static readonly MemslotRequest Slot2 = MemslotRequest.Create(2, 0x20_0000, 4 * Page, Hva + 0x100_0000, LogDirty);

    public MemslotTableTests()
    {
        _table = new MemslotTable(new MemslotLimits { AddressSpaces = 2, SmmSupported = true }, _kernel);
        _table.Apply(Slot1);
        _table.Apply(Slot2);
    }

    /// <summary>Everything that must stay the same after a refusal.</summary>
    private sealed record State(MemslotSnapshot Snapshot, long Generation, IReadOnlyList<(uint, uint, ulong, ulong, ulong)> Kernel, int KernelCalls)
    {
        public static State Of(MemslotTable table, FakeMemslotBackend kernel) =>
            new(table.Current, table.Current.Generation, kernel.KernelState(), kernel.SetCalls.Count);
    }

    private void AssertUnchanged(State before, bool kernelWasAsked)
    {
        Assert.Same(before.Snapshot, _table.Current);
        Assert.Equal(before.Generation, _table.Current.Generation);
        Assert.Equal(before.Kernel, _kernel.KernelState());
        Assert.Equal(before.KernelCalls + (kernelWasAsked ? 1 : 0), _kernel.SetCalls.Count);
    }

    // Requests the rules refuse, given the two slots set up in the constructor.
    public static TheoryData<string, MemslotRequest, int> RuleRefusals() => new()
    {
        { "overlapping create", MemslotRequest.Create(3, 0x10_8000, 16 * Page, Hva + 0x200_0000), Errno.EEXIST },
        { "move onto slot 2", new MemslotRequest(1, 0, 0x1f_8000, 16 * Page, Hva), Errno.EEXIST },
        { "delete of a missing slot", MemslotRequest.Delete(9), Errno.EINVAL },
        { "resize", MemslotRequest.Create(1, 0x10_0000, 32 * Page, Hva), Errno.EINVAL },
        { "hva change", MemslotRequest.Create(1, 0x10_0000, 16 * Page, Hva + Page), Errno.EINVAL },
        { "readonly toggle", MemslotRequest.Create(1, 0x10_0000, 16 * Page, Hva, KvmMemFlags.KVM_MEM_READONLY), Errno.EINVAL },
        { "unknown flag", MemslotRequest.Create(3, 0x40_0000, Page, Hva, 1u << 7), Errno.EINVAL },
        { "unaligned gpa", MemslotRequest.Create(3, 0x40_0800, Page, Hva), Errno.EINVAL },
        { "address space 2", MemslotRequest.Create(3, 0x40_0000, Page, Hva, addressSpace: 2), Errno.EINVAL },
    };

    [Theory]
    [MemberData(nameof(RuleRefusals))]
    public void Rule_refusal_changes_nothing_and_never_asks_the_kernel(string what, MemslotRequest request, int errno)
    {
        var before = State.Of(_table, _kernel);

        var verdict = _table.TryApply(request);

        Assert.False(verdict.Accepted, what);
        Assert.Equal(errno, verdict.Errno);
        AssertUnchanged(before, kernelWasAsked: false);
    }

    [Theory]
    [MemberData(nameof(RuleRefusals))]
    public void Apply_of_a_rule_refusal_throws_with_the_errno_and_the_request(string what, MemslotRequest request, int errno)
    {
        var before = State.Of(_table, _kernel);

        var e = Assert.Throws<MemslotRefusedException>(() => _table.Apply(request));

        Assert.Equal(errno, e.Errno);
        Assert.Equal(request, e.Request);
        Assert.False(e.RefusedByKernel, what);
        Assert.Equal("KVM_SET_USER_MEMORY_REGION", e.Operation);
        Assert.Contains(request.ToString(), e.Message, StringComparison.Ordinal);
        Assert.Contains(Errno.Name(errno), e.Message, StringComparison.Ordinal);
        Assert.Contains(e.Reason, e.Message, StringComparison.Ordinal);
        AssertUnchanged(before, kernelWasAsked: false);
    }

    [Fact]
    public void Observer_veto_changes_nothing_and_never_asks_the_kernel()
    {
        var observer = new RecordingObserver(_kernel, _table) { VetoWith = Errno.EBUSY, VetoReason = "gfn 0x400 is write-tracked" };
        _table.AddObserver(observer);
        var before = State.Of(_table, _kernel);
        var request = MemslotRequest.Create(3, 0x40_0000, Page, Hva + 0x300_0000);

        var verdict = _table.TryApply(request);

        Assert.Equal(Errno.EBUSY, verdict.Errno);
        Assert.Equal("gfn 0x400 is write-tracked", verdict.Reason);
        Assert.Single(observer.Prepares);
        Assert.Empty(observer.Commits);
        AssertUnchanged(before, kernelWasAsked: false);
    }

    [Fact]
    public void Observer_veto_through_Apply_throws_with_the_observers_errno()
    {
        var observer = new RecordingObserver(_kernel, _table) { VetoWith = Errno.EBUSY, VetoReason = "busy" };
        _table.AddObserver(observer);
        var before = State.Of(_table, _kernel);
        var request = MemslotRequest.Delete(1);

        var e = Assert.Throws<MemslotRefusedException>(() => _table.Apply(request));

        Assert.Equal(Errno.EBUSY, e.Errno);
        Assert.Equal(request, e.Request);
        Assert.False(e.RefusedByKernel);
        Assert.Contains("busy", e.Message, StringComparison.Ordinal);
        AssertUnchanged(before, kernelWasAsked: false);
    }

    [Fact]
    public void Observer_veto_without_a_reason_names_the_observer()
    {
        _table.AddObserver(new RecordingObserver(_kernel, _table) { VetoWith = Errno.EPERM });

        var verdict = _table.TryApply(MemslotRequest.Delete(1));

        Assert.Equal(Errno.EPERM, verdict.Errno);
        Assert.Contains(nameof(RecordingObserver), verdict.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Veto_by_any_observer_means_no_observer_commits()
    {
        var vetoing = new RecordingObserver(_kernel, _table) { VetoWith = Errno.EBUSY };
        var later = new RecordingObserver(_kernel, _table);
        _table.AddObserver(later);
        _table.AddObserver(vetoing);

        _table.TryApply(MemslotRequest.Delete(1));

        Assert.Empty(later.Commits);
        Assert.Empty(vetoing.Commits);
    }

    public static TheoryData<string, MemslotRequest, MemslotChangeKind> KernelRefusals() => new()
    {
        { "create", MemslotRequest.Create(3, 0x40_0000, Page, Hva + 0x300_0000), MemslotChangeKind.Create },
        { "delete", MemslotRequest.Delete(1), MemslotChangeKind.Delete },
        { "move", new MemslotRequest(1, 0, 0x80_0000, 16 * Page, Hva), MemslotChangeKind.Move },
        { "flags", new MemslotRequest(2, 0, 0x20_0000, 4 * Page, Hva + 0x100_0000), MemslotChangeKind.FlagsOnly },
    };

    [Theory]
    [MemberData(nameof(KernelRefusals))]
    public void Kernel_refusal_changes_nothing_and_surfaces_the_kernels_errno(string what, MemslotRequest request, MemslotChangeKind kind)
    {
        var observer = new RecordingObserver(_kernel, _table);
        _table.AddObserver(observer);
        var before = State.Of(_table, _kernel);
        _kernel.FailNextSetWith(Errno.ENOMEM);

        var verdict = _table.TryApply(request);

        Assert.False(verdict.Accepted, what);
        Assert.Equal(Errno.ENOMEM, verdict.Errno);
        Assert.Equal(kind, verdict.Kind);
        Assert.Contains("ENOMEM", verdict.Reason, StringComparison.Ordinal);
        Assert.Contains("kernel refused", verdict.Reason, StringComparison.Ordinal);
        Assert.Equal(request.ToKernel(), _kernel.SetCalls[^1]);
        Assert.Single(observer.Prepares);
        Assert.Empty(observer.Commits);
        AssertUnchanged(before, kernelWasAsked: true);
    }

    [Theory]
    [MemberData(nameof(KernelRefusals))]
    public void Kernel_refusal_through_Apply_is_flagged_RefusedByKernel(string what, MemslotRequest request, MemslotChangeKind kind)
    {
        var before = State.Of(_table, _kernel);
        _kernel.FailNextSetWith(Errno.EFAULT);

        var e = Assert.Throws<MemslotRefusedException>(() => _table.Apply(request));

        Assert.True(e.RefusedByKernel, what);
        Assert.Equal(Errno.EFAULT, e.Errno);
        Assert.Equal(request, e.Request);
        Assert.Contains(kind.ToString(), e.Reason, StringComparison.Ordinal);
        Assert.Contains("EFAULT", e.Message, StringComparison.Ordinal);
        Assert.Contains(request.ToString(), e.Message, StringComparison.Ordinal);
        AssertUnchanged(before, kernelWasAsked: true);
    }

    [Fact]
    public void After_a_kernel_refusal_the_same_request_can_succeed()
    {
        var request = MemslotRequest.Create(3, 0x40_0000, Page, Hva + 0x300_0000);
        _kernel.FailNextSetWith(Errno.ENOMEM);
        Assert.False(_table.TryApply(request).Accepted);

        var verdict = _table.TryApply(request);

        Assert.True(verdict.Accepted);
        Assert.NotNull(_table.Current.FindById(0, 3));
        Assert.True(_kernel.KernelSlots.ContainsKey(3));
    }

    [Fact]
    public void Accepted_changes_reach_the_kernel_and_the_snapshot_with_one_generation_each()
    {
        long generation = _table.Current.Generation;

        _table.Apply(MemslotRequest.Create(3, 0x40_0000, Page, Hva + 0x300_0000));
        Assert.Equal(generation + 1, _table.Current.Generation);
        _table.Apply(new MemslotRequest(3, 0, 0x50_0000, Page, Hva + 0x300_0000));
        Assert.Equal(generation + 2, _table.Current.Generation);
        _table.Apply(new MemslotRequest(3, LogDirty, 0x50_0000, Page, Hva + 0x300_0000));
        Assert.Equal(generation + 3, _table.Current.Generation);
        _table.Apply(MemslotRequest.Delete(2));
        Assert.Equal(generation + 4, _table.Current.Generation);

        var model = _table.Current.AllSlots()
            .Select(s => (s.PackedSlot, s.Flags, s.GuestPhysAddr, s.Size, s.HostAddress))
            .OrderBy(s => s.PackedSlot)
            .ToList();
        Assert.Equal(_kernel.KernelState(), model);
        Assert.Equal(new Memslot(3, 0, 0x50_0000, Page, Hva + 0x300_0000, LogDirty), _table.Current.FindById(0, 3));
        Assert.Null(_table.Current.FindById(0, 2));
    }

    [Fact]
    public void Committed_fires_after_the_kernel_accepted_and_sees_the_published_snapshot()
    {
        var observer = new RecordingObserver(_kernel, _table);
        _table.AddObserver(observer);
        int callsBefore = _kernel.SetCalls.Count;
        var request = MemslotRequest.Create(3, 0x40_0000, 2 * Page, Hva + 0x300_0000);

        var verdict = _table.Apply(request);

        var prepared = Assert.Single(observer.Prepares);
        Assert.Equal(callsBefore, prepared.KernelCallsSoFar);
        Assert.Equal(MemslotChangeKind.Create, prepared.Verdict.Kind);

        var committed = Assert.Single(observer.Commits);
        Assert.Equal(callsBefore + 1, committed.KernelCallsSoFar);
        Assert.True(committed.KernelHadTheSlot);
        Assert.Equal(verdict, committed.Verdict);
        Assert.Same(_table.Current, committed.Published);
        Assert.True(committed.PublishedWasCurrent);
        Assert.Equal(verdict.New, committed.Published.FindById(0, 3));
    }

    [Fact]
    public void Committed_reports_a_delete_with_the_old_slot()
    {
        var observer = new RecordingObserver(_kernel, _table);
        _table.AddObserver(observer);

        _table.Apply(MemslotRequest.Delete(1));

        var committed = Assert.Single(observer.Commits);
        Assert.Equal(MemslotChangeKind.Delete, committed.Verdict.Kind);
        Assert.Equal(1, committed.Verdict.Old!.Value.Id);
        Assert.Null(committed.Published.FindById(0, 1));
        Assert.False(committed.KernelHadTheSlot);
    }

    [Fact]
    public void Removed_observer_is_not_called()
    {
        var observer = new RecordingObserver(_kernel, _table);
        _table.AddObserver(observer);
        _table.RemoveObserver(observer);

        _table.Apply(MemslotRequest.Delete(1));

        Assert.Empty(observer.Prepares);
        Assert.Empty(observer.Commits);
    }

    [Fact]
    public void Identical_request_is_None_and_reaches_neither_the_kernel_nor_observers()
    {
        var observer = new RecordingObserver(_kernel, _table);
        _table.AddObserver(observer);
        var before = State.Of(_table, _kernel);

        var verdict = _table.Apply(Slot2);

        Assert.True(verdict.Accepted);
        Assert.Equal(MemslotChangeKind.None, verdict.Kind);
        Assert.Empty(observer.Prepares);
        Assert.Empty(observer.Commits);
        AssertUnchanged(before, kernelWasAsked: false);
    }

    [Fact]
    public void Check_reports_the_verdict_without_changing_anything()
    {
        var before = State.Of(_table, _kernel);

        var move = _table.Check(new MemslotRequest(1, 0, 0x80_0000, 16 * Page, Hva));
        var overlap = _table.Check(MemslotRequest.Create(3, 0x10_0000, Page, Hva));

        Assert.Equal(MemslotChangeKind.Move, move.Kind);
        Assert.Equal(Errno.EEXIST, overlap.Errno);
        AssertUnchanged(before, kernelWasAsked: false);
    }

    [Fact]
    public void Slot_in_the_smm_address_space_is_created_with_its_packed_number()
    {
        var verdict = _table.Apply(MemslotRequest.Create(1, 0x10_0000, 16 * Page, Hva, addressSpace: 1));

        Assert.Equal(MemslotChangeKind.Create, verdict.Kind);
        Assert.Equal(1u | (1u << 16), _kernel.SetCalls[^1].slot);
        Assert.True(_kernel.KernelSlots.ContainsKey(1u | (1u << 16)));
        Assert.NotNull(_table.Current.FindById(1, 1));
        Assert.NotNull(_table.Current.FindById(0, 1));
    }

    // ---- dirty log -----------------------------------------------------------------------------

    [Fact]
    public void Dirty_log_of_a_slot_without_dirty_logging_is_ENOENT()
    {
        var e = Assert.Throws<MemslotRefusedException>(() => _table.GetDirtyLog(1));

        Assert.Equal(Errno.ENOENT, e.Errno);
        Assert.Empty(_kernel.DirtyLogCalls);
    }

    [Fact]
    public void Dirty_log_of_a_missing_slot_is_ENOENT()
    {
        var e = Assert.Throws<MemslotRefusedException>(() => _table.GetDirtyLog(5));

        Assert.Equal(Errno.ENOENT, e.Errno);
        Assert.Contains("slot 5", e.Message, StringComparison.Ordinal);
        Assert.Empty(_kernel.DirtyLogCalls);
    }

    [Theory]
    [InlineData(32764, 0)]
    [InlineData(2, 2)]
    public void Dirty_log_of_an_out_of_range_slot_is_EINVAL(int id, int addressSpace)
    {
        var e = Assert.Throws<MemslotRefusedException>(() => _table.GetDirtyLog((ushort)id, (ushort)addressSpace));

        Assert.Equal(Errno.EINVAL, e.Errno);
        Assert.Empty(_kernel.DirtyLogCalls);
    }

    [Fact]
    public void Dirty_log_reads_one_bit_per_page_from_the_kernel()
    {
        _table.Apply(MemslotRequest.Create(4, 0x100_0000, 100 * Page, Hva + 0x400_0000, LogDirty, addressSpace: 1));
        _kernel.DirtyWordPattern = 0x0123_4567_89ab_cdef;

        ulong[] bitmap = _table.GetDirtyLog(4, addressSpace: 1);

        Assert.Equal([0x0123_4567_89ab_cdefUL, 0x0123_4567_89ab_cdefUL], bitmap);
        Assert.Equal((4u | (1u << 16), 2), Assert.Single(_kernel.DirtyLogCalls));
    }

    [Fact]
    public void Dirty_log_failure_in_the_kernel_surfaces_its_errno()
    {
        _kernel.FailNextDirtyLogWith(Errno.EFAULT);

        var e = Assert.Throws<KvmException>(() => _table.GetDirtyLog(2));

        Assert.Equal(Errno.EFAULT, e.Errno);
        Assert.Equal("KVM_GET_DIRTY_LOG", e.Operation);
    }

    /// <summary>Records Prepare and Committed calls with what the kernel and the table looked like at the time.</summary>
    private sealed class RecordingObserver(FakeMemslotBackend kernel, MemslotTable table) : IMemslotObserver
    {
        public int VetoWith { get; init; }
        public string? VetoReason { get; init; }

        public List<(MemslotVerdict Verdict, int KernelCallsSoFar)> Prepares { get; } = [];

        public List<(MemslotVerdict Verdict, MemslotSnapshot Published, int KernelCallsSoFar, bool KernelHadTheSlot, bool PublishedWasCurrent)> Commits { get; } = [];

        public int Prepare(in MemslotVerdict change, out string? reason)
        {
            Prepares.Add((change, kernel.SetCalls.Count));
            reason = VetoReason;
            return VetoWith;
        }

        public void Committed(in MemslotVerdict change, MemslotSnapshot published)
        {
            var slot = change.New ?? change.Old!.Value;
            bool publishedWasCurrent = ReferenceEquals(table.Current, published);
            Commits.Add((change, published, kernel.SetCalls.Count, kernel.KernelSlots.ContainsKey(slot.PackedSlot), publishedWasCurrent));
        }
    }
}
