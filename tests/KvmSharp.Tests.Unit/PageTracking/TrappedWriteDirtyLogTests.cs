using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using Xunit;

namespace KvmSharp.Tests.Unit.PageTracking;

/// <summary>
/// The user's dirty log of a carved slot is the kernel bits of every piece, shifted to the piece's
/// page index in the user slot, plus the pages KvmSharp wrote on the guest's behalf.
/// </summary>
public sealed class TrappedWriteDirtyLogTests : IDisposable
{
    private const ulong SlotGpa = 0x10_0000; // gfns 0x100..0x14f (80 pages: two bitmap words)

    private readonly TrackingRig _rig = new();
    private readonly RamSlot _ram;

    public TrappedWriteDirtyLogTests()
    {
        _ram = _rig.AddSlot(1, SlotGpa, 80, KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES);
        _rig.Tracker.AddGfn(0x105);
    }

    public void Dispose() => _rig.Dispose();

    private static ulong[] Bits(int words, params int[] pages)
    {
        var bitmap = new ulong[words];
        foreach (int page in pages) bitmap[page / 64] |= 1UL << (page % 64);
        return bitmap;
    }

    private uint PieceAt(ulong gpa) => _rig.Carved.PiecesOf(1).Single(p => p.GuestPhysAddr == gpa).PackedSlot;

    [Fact]
    public void Emulated_writes_and_kernel_bits_of_every_piece_merge_at_the_right_page()
    {
        // Pieces: [0x100..0x104] id 1, [0x105] read-only, [0x106..0x14f].
        _rig.Kernel.MarkDirty(PieceAt(0x10_0000), 1);
        _rig.Kernel.MarkDirty(PieceAt(0x10_6000), 0, 3, 60); // user pages 6, 9, 66

        Assert.True(_rig.Write(0, 0x10_5ff8, [1, 2, 3, 4, 5, 6, 7, 8])); // tracked: page 5
        Assert.True(_rig.Write(0, 0x14_f000, [1]));                         // untracked, trapped anyway: page 79

        Assert.Equal(Bits(2, 1, 5, 6, 9, 66, 79), _rig.Table.GetDirtyLog(1));
        Assert.Equal(Bits(2), _rig.Table.GetDirtyLog(1)); // a read clears
    }

    [Fact]
    public void Kernel_bits_of_a_piece_removed_by_a_recarve_are_not_lost()
    {
        _rig.Kernel.MarkDirty(PieceAt(0x10_6000), 3, 70); // user pages 9 and 76

        _rig.Tracker.AddGfn(0x10a); // replaces the tail piece

        Assert.Equal(Bits(2, 9, 76), _rig.Table.GetDirtyLog(1));
    }

    [Fact]
    public void Without_dirty_logging_a_trapped_write_leaves_no_dirty_trace()
    {
        var plain = _rig.AddSlot(2, 0x20_0000, 4);
        _rig.Tracker.AddGfn(0x201);
        Assert.True(_rig.Write(0, 0x20_1000, [1]));

        _rig.Table.Apply(MemslotRequest.Create(2, 0x20_0000, 4 * TrackingRig.Page, plain.Slot.HostAddress, KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES));

        Assert.Equal(Bits(1), _rig.Table.GetDirtyLog(2));
    }
}
