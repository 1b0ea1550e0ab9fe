using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using Xunit;

namespace KvmSharp.Tests.Unit.PageTracking;

/// <summary>
/// FLAGS_ONLY (toggling KVM_MEM_LOG_DIRTY_PAGES) on a carved slot keeps the counts and the carving:
/// every piece takes the new flags, tracked pieces stay read-only, and no notifier hears of it.
/// </summary>
public sealed class FlagsOnlyChangeTests : IDisposable
{
    private const ulong Page = TrackingRig.Page;
    private const ulong SlotGpa = 0x10_0000; // gfns 0x100..0x10f
    private const uint LogDirty = KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES;
    private const uint ReadOnly = KvmMemFlags.KVM_MEM_READONLY;

    private readonly TrackingRig _rig = new();
    private readonly RamSlot _ram;
    private readonly RecordingNotifier _notifier = new();

    public FlagsOnlyChangeTests()
    {
        _ram = _rig.AddSlot(1, SlotGpa, 16);
        _rig.Tracker.AddGfn(0x105);
        _rig.Tracker.AddGfn(0x10a);
        _rig.Tracker.AddGfn(0x10a);
        _rig.Tracker.Register(_notifier);
    }

    public void Dispose() => _rig.Dispose();

    private MemslotVerdict SetFlags(uint flags) =>
        _rig.Table.Apply(MemslotRequest.Create(1, SlotGpa, 16 * Page, _ram.Slot.HostAddress, flags));

    private static IEnumerable<(uint Slot, ulong Gpa, ulong Size, ulong Hva)> Ranges(IEnumerable<KernelSlot> slots) =>
        slots.Select(s => (s.Slot, s.Gpa, s.Size, s.Hva));

    [Fact]
    public void Turning_dirty_logging_on_and_off_keeps_counts_and_carved_pieces()
    {
        var before = _rig.Kernel.Slots();
        Assert.Equal(5, before.Count);

        var verdict = SetFlags(LogDirty);

        Assert.Equal(MemslotChangeKind.FlagsOnly, verdict.Kind);
        Assert.Equal(1, _rig.Tracker.Count(0x105));
        Assert.Equal(2, _rig.Tracker.Count(0x10a));
        var logging = _rig.Kernel.Slots();
        Assert.Equal(Ranges(before), Ranges(logging));
        foreach (var slot in logging)
        {
            bool tracked = slot.Gpa is 0x10_5000 or 0x10_a000;
            Assert.Equal(tracked ? LogDirty | ReadOnly : LogDirty, slot.Flags);
        }
        Assert.Equal(logging.Select(s => s.Slot).Order(), _rig.Carved.PiecesOf(1).Select(p => p.PackedSlot).Order());
        Assert.All(_rig.Carved.PiecesOf(1), p => Assert.True((p.Flags & LogDirty) != 0));

        SetFlags(0);

        Assert.Equal(before, _rig.Kernel.Slots());
        Assert.Equal(1, _rig.Tracker.Count(0x105));
        Assert.Equal(2, _rig.Tracker.Count(0x10a));
        Assert.Empty(_notifier.Removals);
        Assert.Empty(_notifier.Writes);
    }

    [Fact]
    public void A_tracked_page_still_reports_writes_after_a_flags_change()
    {
        SetFlags(LogDirty);

        Assert.True(_rig.Write(0, 0x10_5008, [0xab]));

        Assert.Equal([(0x10_5008UL, 0xab)], _notifier.Writes.Select(w => (w.Gpa, (int)w.Bytes.Single())));
    }
}
