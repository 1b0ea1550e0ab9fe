using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using Xunit;

namespace KvmSharp.Tests.Unit.PageTracking;

/// <summary>
/// Carved pieces take kernel ids from the top of the id space downward; a user slot created on an
/// id a piece holds wins it, and the piece moves to another free id.
/// </summary>
public sealed class CarveIdAllocationTests : IDisposable
{
    private const ulong Page = TrackingRig.Page;
    private const ulong SlotGpa = 0x10_0000; // gfns 0x100..0x10f
    private const uint ReadOnly = KvmMemFlags.KVM_MEM_READONLY;

    private readonly TrackingRig _rig = new(new MemslotLimits { SlotsPerAddressSpace = 64 });
    private readonly RamSlot _ram;

    public CarveIdAllocationTests() => _ram = _rig.AddSlot(1, SlotGpa, 16);

    public void Dispose() => _rig.Dispose();

    private ulong Hva(ulong gfn) => _ram.Slot.HostAddress + ((gfn - 0x100) * Page);

    private static KernelSlot Kernel(uint id, uint flags, ulong gfn, ulong pages, ulong hva) =>
        new(id, flags, gfn * Page, pages * Page, hva);

    [Fact]
    public void Pieces_take_ids_from_the_top_of_the_id_space_downward()
    {
        _rig.Tracker.AddGfn(0x105);

        Assert.Equal(
            [Kernel(1, 0, 0x100, 5, Hva(0x100)), Kernel(63, ReadOnly, 0x105, 1, Hva(0x105)), Kernel(62, 0, 0x106, 10, Hva(0x106))],
            _rig.Kernel.SlotsByGpa(0));

        _rig.Tracker.AddGfn(0x10a);

        Assert.Equal(
            [
                Kernel(1, 0, 0x100, 5, Hva(0x100)), Kernel(63, ReadOnly, 0x105, 1, Hva(0x105)),
                Kernel(62, 0, 0x106, 4, Hva(0x106)), Kernel(61, ReadOnly, 0x10a, 1, Hva(0x10a)), Kernel(60, 0, 0x10b, 5, Hva(0x10b)),
            ],
            _rig.Kernel.SlotsByGpa(0));
        Assert.Equal(_rig.Kernel.SlotsByGpa(0).Select(s => s.Slot), _rig.Carved.PiecesOf(1).Select(p => p.PackedSlot));
    }

    [Fact]
    public void Pieces_skip_ids_that_user_slots_hold()
    {
        var top = _rig.AddSlot(63, 0x80_0000, 1);

        _rig.Tracker.AddGfn(0x105);

        Assert.Equal(
            [Kernel(1, 0, 0x100, 5, Hva(0x100)), Kernel(62, ReadOnly, 0x105, 1, Hva(0x105)), Kernel(61, 0, 0x106, 10, Hva(0x106)),
             Kernel(63, 0, 0x800, 1, top.Slot.HostAddress)],
            _rig.Kernel.SlotsByGpa(0));
    }

    [Fact]
    public void A_user_slot_created_on_a_pieces_id_gets_it_and_the_piece_moves_to_another_id()
    {
        var notifier = new RecordingNotifier();
        _rig.Tracker.Register(notifier);
        _rig.Tracker.AddGfn(0x105); // read-only piece on id 63, tail on 62

        var user = _rig.AddSlot(63, 0x80_0000, 2);

        var kernel = _rig.Kernel.SlotsByGpa(0);
        Assert.Equal(4, kernel.Count);
        Assert.Contains(Kernel(63, 0, 0x800, 2, user.Slot.HostAddress), kernel);
        var relocated = Assert.Single(kernel, s => s.Gpa == 0x10_5000);
        Assert.Equal((ReadOnly, Page, Hva(0x105)), (relocated.Flags, relocated.Size, relocated.Hva));
        Assert.DoesNotContain(relocated.Id, new ushort[] { 1, 62, 63 });
        Assert.True(relocated.Id < 64);
        Assert.Equal(kernel.Where(s => s.Gpa < 0x80_0000).Select(s => s.Slot), _rig.Carved.PiecesOf(1).Select(p => p.PackedSlot));
        Assert.Equal([new KernelSlotPiece(63, 0, 0x80_0000, 2 * Page, user.Slot.HostAddress, 0)], _rig.Carved.PiecesOf(63));

        // Tracking still works, and un-carving leaves exactly the two user slots.
        Assert.True(_rig.Write(0, 0x10_5000, [7]));
        Assert.Single(notifier.Writes);
        _rig.Tracker.RemoveGfn(0x105);
        Assert.Equal(
            [Kernel(1, 0, 0x100, 16, Hva(0x100)), Kernel(63, 0, 0x800, 2, user.Slot.HostAddress)],
            _rig.Kernel.Slots());
    }

    [Fact]
    public void With_tracking_active_the_user_can_create_a_slot_on_every_id_and_the_carving_coarsens_then_refines()
    {
        _rig.Tracker.AddGfn(0x102);
        _rig.Tracker.AddGfn(0x104);
        _rig.Tracker.AddGfn(0x10a);
        Assert.Equal(7, _rig.Carved.PiecesOf(1).Count);
        _rig.AssertLayout();

        var created = new List<ushort>();
        for (ushort id = 0; id < 64; id++)
        {
            if (id == 1) continue;
            var verdict = _rig.Table.TryApply(MemslotRequest.Create(id, 0x100_0000 + ((ulong)id * Page), Page, Hva(0x100)));
            Assert.True(verdict.Accepted, $"CREATE of id {id} refused: {verdict.Reason}");
            created.Add(id);
            _rig.AssertLayout();
        }

        Assert.Equal(64, _rig.Kernel.Slots().Count);
        Assert.Equal([new KernelSlotPiece(1, 0, SlotGpa, 16 * Page, Hva(0x100), ReadOnly)], _rig.Carved.PiecesOf(1));
        Assert.Equal(0, _rig.Tracker.TrackingKernelSlots);
        Assert.Equal(1, _rig.Tracker.CoarsenedSlots);

        // Tracking changes still succeed at the limit, within the one piece.
        _rig.Tracker.AddGfn(0x10f);
        _rig.Tracker.RemoveGfn(0x10f);
        _rig.AssertLayout();

        foreach (ushort id in created.Take(6)) _rig.Table.Apply(MemslotRequest.Delete(id));

        Assert.Equal(7, _rig.Carved.PiecesOf(1).Count);
        Assert.Equal(0, _rig.Tracker.CoarsenedSlots);
        _rig.AssertLayout();
    }
}
