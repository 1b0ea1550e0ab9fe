using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using Xunit;

namespace KvmSharp.Tests.Unit.PageTracking;

/// <summary>
/// Upstream tracks address space 0 only; KvmSharp protects a gfn in every address space whose slots
/// map it. SMM memory (as 1) is carved, trapped and reported like normal memory.
/// </summary>
public sealed class SmmTrackingTests : IDisposable
{
    private const ulong Page = TrackingRig.Page;
    private const uint ReadOnly = KvmMemFlags.KVM_MEM_READONLY;
    private const uint AsOne = 1u << 16;
    private const ushort TopId = 32763; // default KVM_CAP_NR_MEMSLOTS - 1

    private readonly TrackingRig _rig = new(new MemslotLimits { AddressSpaces = 2, SmmSupported = true });
    private readonly RamSlot _normal; // as 0, slot 1: gfns 0x100..0x10f
    private readonly RamSlot _smm;    // as 1, slot 5: gfns 0x80..0x17f

    public SmmTrackingTests()
    {
        _normal = _rig.AddSlot(1, 0x10_0000, 16);
        _smm = _rig.AddSlot(5, 0x8_0000, 0x100, addressSpace: 1);
    }

    public void Dispose() => _rig.Dispose();

    [Fact]
    public void AddGfn_carves_the_gfn_out_of_the_slots_of_both_address_spaces()
    {
        _rig.Tracker.AddGfn(0x105);

        Assert.Equal(1, _rig.Tracker.Count(0x105, 0));
        Assert.Equal(1, _rig.Tracker.Count(0x105, 1));
        Assert.Equal(
            [
                new KernelSlot(1, 0, 0x10_0000, 5 * Page, _normal.Slot.HostAddress),
                new KernelSlot(TopId, ReadOnly, 0x10_5000, Page, _normal.Slot.HostAddress + (5 * Page)),
                new KernelSlot(TopId - 1, 0, 0x10_6000, 10 * Page, _normal.Slot.HostAddress + (6 * Page)),
            ],
            _rig.Kernel.SlotsByGpa(0));
        Assert.Equal(
            [
                new KernelSlot(5 | AsOne, 0, 0x8_0000, 0x85 * Page, _smm.Slot.HostAddress),
                new KernelSlot(TopId | AsOne, ReadOnly, 0x10_5000, Page, _smm.Slot.HostAddress + (0x85 * Page)),
                new KernelSlot((TopId - 1) | AsOne, 0, 0x10_6000, 0x7a * Page, _smm.Slot.HostAddress + (0x86 * Page)),
            ],
            _rig.Kernel.SlotsByGpa(1));
    }

    [Fact]
    public void A_write_through_the_smm_address_space_lands_in_smm_memory_and_is_reported()
    {
        var notifier = new RecordingNotifier();
        _rig.Tracker.Register(notifier);
        _rig.Tracker.AddGfn(0x105);
        byte[] bytes = [0xde, 0xad, 0xbe, 0xef];

        Assert.True(_rig.Write(3, 0x10_5010, bytes, addressSpace: 1));

        var write = Assert.Single(notifier.Writes);
        Assert.Equal(0x10_5010UL, write.Gpa);
        Assert.Equal(bytes, write.Bytes);
        Assert.Equal(3, write.VcpuId);
        Assert.Equal(bytes, _smm.Read(0x10_5010, 4));
        Assert.Equal(new byte[4], _normal.Read(0x10_5010, 4));
    }

    [Fact]
    public void RemoveGfn_uncarves_both_address_spaces()
    {
        _rig.Tracker.AddGfn(0x105);

        _rig.Tracker.RemoveGfn(0x105);

        Assert.Equal(0, _rig.Tracker.Count(0x105, 0));
        Assert.Equal(0, _rig.Tracker.Count(0x105, 1));
        Assert.Equal(
            [
                new KernelSlot(1, 0, 0x10_0000, 16 * Page, _normal.Slot.HostAddress),
                new KernelSlot(5 | AsOne, 0, 0x8_0000, 0x100 * Page, _smm.Slot.HostAddress),
            ],
            _rig.Kernel.Slots());
    }

    [Fact]
    public void A_gfn_mapped_only_in_smm_can_be_tracked()
    {
        var notifier = new RecordingNotifier();
        _rig.Tracker.Register(notifier);
        var normalBefore = _rig.Kernel.SlotsByGpa(0);

        _rig.Tracker.AddGfn(0x90);

        Assert.Equal(1, _rig.Tracker.Count(0x90, 1));
        Assert.Equal(0, _rig.Tracker.Count(0x90, 0));
        Assert.Equal(normalBefore, _rig.Kernel.SlotsByGpa(0));
        Assert.Contains(new KernelSlot(TopId | AsOne, ReadOnly, 0x9_0000, Page, _smm.Slot.HostAddress + (0x10 * Page)), _rig.Kernel.SlotsByGpa(1));

        Assert.True(_rig.Write(0, 0x9_0000, [0x11, 0x22], addressSpace: 1));
        Assert.False(_rig.Write(0, 0x9_0000, [0x33, 0x44], addressSpace: 0));

        var write = Assert.Single(notifier.Writes);
        Assert.Equal(0x9_0000UL, write.Gpa);
        Assert.Equal(new byte[] { 0x11, 0x22 }, write.Bytes);

        _rig.Tracker.RemoveGfn(0x90);
        Assert.Single(_rig.Kernel.SlotsByGpa(1));
    }
}
