using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.PageTracking;
using Xunit;

namespace KvmSharp.Tests.Unit.PageTracking;

/// <summary>
/// The 16-bit per-gfn write-track count: EINVAL for a gfn no slot covers, ERANGE for under- and
/// overflow (nothing changed), and only the 0↔1 transitions touch the kernel layout.
/// </summary>
public sealed class WriteTrackCountTests : IDisposable
{
    private const ulong Page = TrackingRig.Page;
    private const ulong SlotGpa = 0x10_0000; // gfns 0x100..0x10f
    private const ulong Tracked = 0x105;

    private readonly TrackingRig _rig = new();
    private readonly RamSlot _ram;

    public WriteTrackCountTests() => _ram = _rig.AddSlot(1, SlotGpa, 16);

    public void Dispose() => _rig.Dispose();

    private KernelSlot UserSlotAsOnePiece => new(1, 0, SlotGpa, 16 * Page, _ram.Slot.HostAddress);

    [Fact]
    public void AddGfn_on_a_gfn_no_slot_covers_is_EINVAL_and_changes_nothing()
    {
        var kernelBefore = _rig.Kernel.Slots();
        int callsBefore = _rig.Kernel.SetCallCount;

        var add = Assert.Throws<PageTrackException>(() => _rig.Tracker.AddGfn(0x200));
        var remove = Assert.Throws<PageTrackException>(() => _rig.Tracker.RemoveGfn(0xff));

        Assert.Equal(Errno.EINVAL, add.Errno);
        Assert.Equal(Errno.EINVAL, remove.Errno);
        Assert.Equal(0, _rig.Tracker.Count(0x200));
        Assert.Empty(_rig.Tracker.TrackedGfns);
        Assert.Equal(kernelBefore, _rig.Kernel.Slots());
        Assert.Equal(callsBefore, _rig.Kernel.SetCallCount);
    }

    [Fact]
    public void AddGfn_twice_counts_two_and_only_the_first_changes_the_kernel_layout()
    {
        int callsBefore = _rig.Kernel.SetCallCount;

        _rig.Tracker.AddGfn(Tracked);
        int callsAfterFirst = _rig.Kernel.SetCallCount;
        var layoutAfterFirst = _rig.Kernel.Slots();
        _rig.Tracker.AddGfn(Tracked);

        Assert.Equal(2, _rig.Tracker.Count(Tracked));
        Assert.True(callsAfterFirst > callsBefore, "the first AddGfn must carve the slot");
        Assert.Equal(3, layoutAfterFirst.Count);
        Assert.Equal(callsAfterFirst, _rig.Kernel.SetCallCount);
        Assert.Equal(layoutAfterFirst, _rig.Kernel.Slots());
        Assert.Equal([Tracked], _rig.Tracker.TrackedGfns[1]);
    }

    [Fact]
    public void RemoveGfn_back_to_zero_restores_a_single_kernel_slot_with_the_users_id()
    {
        _rig.Tracker.AddGfn(Tracked);
        _rig.Tracker.AddGfn(Tracked);

        _rig.Tracker.RemoveGfn(Tracked);
        Assert.Equal(1, _rig.Tracker.Count(Tracked));
        Assert.Equal(3, _rig.Kernel.Slots().Count);

        _rig.Tracker.RemoveGfn(Tracked);
        Assert.Equal(0, _rig.Tracker.Count(Tracked));
        Assert.Empty(_rig.Tracker.TrackedGfns);
        Assert.Equal([UserSlotAsOnePiece], _rig.Kernel.Slots());
        Assert.Equal([new KernelSlotPiece(1, 0, SlotGpa, 16 * Page, _ram.Slot.HostAddress, 0)], _rig.Carved.PiecesOf(1));
    }

    [Fact]
    public void RemoveGfn_below_zero_is_ERANGE_and_changes_nothing()
    {
        var never = Assert.Throws<PageTrackException>(() => _rig.Tracker.RemoveGfn(Tracked));
        Assert.Equal(Errno.ERANGE, never.Errno);

        _rig.Tracker.AddGfn(0x10a);
        _rig.Tracker.AddGfn(Tracked);
        _rig.Tracker.RemoveGfn(Tracked);
        var kernelBefore = _rig.Kernel.Slots();
        int callsBefore = _rig.Kernel.SetCallCount;

        var again = Assert.Throws<PageTrackException>(() => _rig.Tracker.RemoveGfn(Tracked));

        Assert.Equal(Errno.ERANGE, again.Errno);
        Assert.Equal(0, _rig.Tracker.Count(Tracked));
        Assert.Equal(1, _rig.Tracker.Count(0x10a));
        Assert.Equal(kernelBefore, _rig.Kernel.Slots());
        Assert.Equal(callsBefore, _rig.Kernel.SetCallCount);
    }

    [Fact]
    public void The_count_saturates_at_65535_with_ERANGE_instead_of_wrapping()
    {
        for (int i = 0; i < ushort.MaxValue; i++) _rig.Tracker.AddGfn(Tracked);
        Assert.Equal(ushort.MaxValue, _rig.Tracker.Count(Tracked));
        var kernelBefore = _rig.Kernel.Slots();
        int callsBefore = _rig.Kernel.SetCallCount;

        var overflow = Assert.Throws<PageTrackException>(() => _rig.Tracker.AddGfn(Tracked));

        Assert.Equal(Errno.ERANGE, overflow.Errno);
        Assert.Equal(ushort.MaxValue, _rig.Tracker.Count(Tracked));
        Assert.Equal(kernelBefore, _rig.Kernel.Slots());
        Assert.Equal(callsBefore, _rig.Kernel.SetCallCount);

        _rig.Tracker.RemoveGfn(Tracked);
        Assert.Equal(ushort.MaxValue - 1, _rig.Tracker.Count(Tracked));
    }

    [Fact]
    public void Counts_are_per_gfn()
    {
        _rig.Tracker.AddGfn(0x101);
        _rig.Tracker.AddGfn(0x10e);
        _rig.Tracker.AddGfn(0x10e);

        Assert.Equal(1, _rig.Tracker.Count(0x101));
        Assert.Equal(2, _rig.Tracker.Count(0x10e));
        Assert.Equal(0, _rig.Tracker.Count(0x102));
        Assert.Equal([0x101UL, 0x10eUL], _rig.Tracker.TrackedGfns[1].Order());
    }
}
