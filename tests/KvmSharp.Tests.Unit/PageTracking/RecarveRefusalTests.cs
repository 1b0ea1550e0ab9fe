using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using Xunit;

namespace KvmSharp.Tests.Unit.PageTracking;

/// <summary>
/// A re-carve is several KVM_SET_USER_MEMORY_REGION calls. Whichever of them the kernel refuses, the
/// tracking call throws that errno and leaves counts, carved pieces and the kernel's slots exactly
/// as they were.
/// </summary>
public sealed class RecarveRefusalTests : IDisposable
{
    private const ulong SlotGpa = 0x10_0000; // gfns 0x100..0x10f
    private const int Injected = Errno.ENOMEM;

    private readonly TrackingRig _rig = new(new MemslotLimits { AddressSpaces = 2, SmmSupported = true });

    public void Dispose() => _rig.Dispose();

    private sealed record State(IReadOnlyList<KernelSlot> Kernel, IReadOnlyList<KernelSlotPiece> Pieces, IReadOnlyDictionary<uint, ulong[]> Tracked);

    private State Capture() => new(
        _rig.Kernel.Slots(),
        _rig.Carved.PiecesOf(1).Concat(_rig.Carved.PiecesOf(1, 1)).ToList(),
        _rig.Tracker.TrackedGfns.ToDictionary(p => p.Key, p => p.Value.Order().ToArray()));

    private void AssertRefusedWithNothingChanged(Action call, State before)
    {
        var refused = Assert.Throws<PageTrackException>(call);

        Assert.False(_rig.Kernel.FailureArmed, "the injected failure was never reached: the test does not test anything");
        Assert.Equal(before.Kernel, _rig.Kernel.Slots());
        Assert.Equal(before.Pieces, _rig.Carved.PiecesOf(1).Concat(_rig.Carved.PiecesOf(1, 1)).ToList());
        Assert.Equal(before.Tracked.Keys.Order(), _rig.Tracker.TrackedGfns.Keys.Order());
        foreach (var (slot, gfns) in before.Tracked) Assert.Equal(gfns, _rig.Tracker.TrackedGfns[slot].Order());
        Assert.Equal(Errno.Name(Injected), Errno.Name(refused.Errno)); // the kernel's own answer, not a follow-on error
    }

    /// <summary>First carve of an untracked slot: delete it, then create three pieces (4 calls).</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void Refusal_of_call_N_of_the_first_carve_changes_nothing(int n)
    {
        _rig.AddSlot(1, SlotGpa, 16);
        var before = Capture();
        _rig.Kernel.FailSetCall(n, Injected);

        AssertRefusedWithNothingChanged(() => _rig.Tracker.AddGfn(0x105), before);
        Assert.Equal(0, _rig.Tracker.Count(0x105));
    }

    /// <summary>A second tracked gfn in the tail piece: delete the tail, create three pieces (4 calls).</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void Refusal_of_call_N_of_a_further_carve_changes_nothing(int n)
    {
        _rig.AddSlot(1, SlotGpa, 16);
        _rig.Tracker.AddGfn(0x105);
        var before = Capture();
        _rig.Kernel.FailSetCall(n, Injected);

        AssertRefusedWithNothingChanged(() => _rig.Tracker.AddGfn(0x10a), before);
        Assert.Equal(1, _rig.Tracker.Count(0x105));
        Assert.Equal(0, _rig.Tracker.Count(0x10a));
    }

    /// <summary>Un-carving to one slot: delete the three pieces, create the whole slot (4 calls).</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void Refusal_of_call_N_of_an_uncarve_changes_nothing(int n)
    {
        _rig.AddSlot(1, SlotGpa, 16);
        _rig.Tracker.AddGfn(0x105);
        var before = Capture();
        _rig.Kernel.FailSetCall(n, Injected);

        AssertRefusedWithNothingChanged(() => _rig.Tracker.RemoveGfn(0x105), before);
        Assert.Equal(1, _rig.Tracker.Count(0x105));
    }

    /// <summary>With SMM the address-space-0 carve (calls 1-4) succeeds and the SMM one (calls 5-8) is refused: the first is undone.</summary>
    [Theory]
    [InlineData(6)]
    [InlineData(7)]
    [InlineData(8)]
    public void Refusal_in_the_smm_slot_undoes_the_carve_already_made_in_address_space_0(int n)
    {
        _rig.AddSlot(1, SlotGpa, 16);
        _rig.AddSlot(1, SlotGpa, 16, addressSpace: 1);
        var before = Capture();
        _rig.Kernel.FailSetCall(n, Injected);

        AssertRefusedWithNothingChanged(() => _rig.Tracker.AddGfn(0x105), before);
        Assert.Equal(0, _rig.Tracker.Count(0x105, 0));
        Assert.Equal(0, _rig.Tracker.Count(0x105, 1));
        Assert.Single(_rig.Kernel.SlotsByGpa(0));
        Assert.Single(_rig.Kernel.SlotsByGpa(1));
    }
}
