using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.PageTracking;
using Xunit;

namespace KvmSharp.Tests.Unit.PageTracking;

/// <summary>
/// HandleTrappedAccess, the vCPU side: RAM accesses are performed on the backing memory, tracked
/// writes are reported after they land with exact gpa and bytes, everything else is the bus's.
/// </summary>
public sealed class TrappedAccessTests : IDisposable
{
    private const ulong SlotGpa = 0x10_0000; // gfns 0x100..0x10f
    private const ulong TrackedGpa = 0x10_5000;

    private readonly TrackingRig _rig = new();
    private readonly RamSlot _ram;
    private readonly RecordingNotifier _notifier = new();

    public TrappedAccessTests()
    {
        _ram = _rig.AddSlot(1, SlotGpa, 16);
        _rig.Tracker.AddGfn(0x105);
        _rig.Tracker.Register(_notifier);
    }

    public void Dispose() => _rig.Dispose();

    [Fact]
    public void A_read_returns_the_backing_bytes_and_reports_nothing()
    {
        byte[] stored = [1, 2, 3, 4, 5, 6, 7, 8];
        _ram.Fill(TrackedGpa + 0x40, stored);
        var data = new byte[8];

        Assert.True(_rig.Tracker.HandleTrappedAccess(0, 0, TrackedGpa + 0x40, data, isWrite: false));

        Assert.Equal(stored, data);
        Assert.Empty(_notifier.Writes);
        Assert.Equal(0, _rig.Tracker.TrackedWrites);
    }

    [Fact]
    public void A_write_has_landed_in_guest_memory_before_TrackWrite_is_called()
    {
        _ram.Fill(TrackedGpa + 0x10, [0xff, 0xff, 0xff, 0xff]);
        byte[]? seenInHook = null;
        _notifier.OnWrite = (gpa, bytes) => seenInHook = _ram.Read(gpa, bytes.Length);

        Assert.True(_rig.Write(0, TrackedGpa + 0x10, [0x10, 0x20, 0x30, 0x40]));

        Assert.Equal(new byte[] { 0x10, 0x20, 0x30, 0x40 }, seenInHook);
    }

    [Theory]
    [InlineData(1, 0x000)]
    [InlineData(2, 0x7fe)]
    [InlineData(4, 0x124)]
    [InlineData(8, 0xff8)]
    [InlineData(8, 0x003)] // unaligned
    [InlineData(16, 0x200)]
    public void A_write_of_each_size_is_reported_with_its_exact_gpa_and_bytes(int size, int offset)
    {
        ulong gpa = TrackedGpa + (ulong)offset;
        var bytes = Enumerable.Range(0, size).Select(i => (byte)(0x81 + i)).ToArray();
        ulong window = Math.Max(TrackedGpa, gpa - 8);
        var expectedWindow = _ram.Read(window, 32);
        for (int i = 0; i < size; i++) expectedWindow[(int)(gpa - window) + i] = bytes[i];

        Assert.True(_rig.Write(4, gpa, bytes));

        var write = Assert.Single(_notifier.Writes);
        Assert.Equal(gpa, write.Gpa);
        Assert.Equal(bytes, write.Bytes);
        Assert.Equal(expectedWindow, _ram.Read(window, 32)); // the bytes, and nothing around them
        Assert.Equal(1, _rig.Tracker.TrackedWrites);
    }

    [Fact]
    public void CurrentVcpuId_is_the_writing_vcpu_inside_the_hook_and_minus_one_outside()
    {
        int inside = int.MinValue;
        _notifier.OnWrite = (_, _) => inside = PageTrackContext.CurrentVcpuId;
        Assert.Equal(-1, PageTrackContext.CurrentVcpuId);

        _rig.Write(7, TrackedGpa, [1]);

        Assert.Equal(7, inside);
        Assert.Equal(-1, PageTrackContext.CurrentVcpuId);

        _rig.Write(0, TrackedGpa, [2]);
        Assert.Equal(0, inside);
        Assert.Equal(-1, PageTrackContext.CurrentVcpuId);
    }

    [Fact]
    public void An_address_in_no_slot_is_left_to_the_bus()
    {
        var data = new byte[4];

        Assert.False(_rig.Tracker.HandleTrappedAccess(0, 0, 0xfee0_0000, data, isWrite: true));
        Assert.False(_rig.Tracker.HandleTrappedAccess(0, 0, 0xfee0_0000, data, isWrite: false));
        Assert.False(_rig.Tracker.HandleTrappedAccess(0, 0, SlotGpa + (16 * TrackingRig.Page), data, isWrite: true));
        Assert.False(_rig.Tracker.HandleTrappedAccess(0, 1, TrackedGpa, data, isWrite: true)); // no address space 1 here

        Assert.Empty(_notifier.Writes);
    }

    [Fact]
    public void A_user_readonly_slot_is_left_to_the_bus_even_when_tracked()
    {
        var rom = _rig.AddSlot(2, 0x20_0000, 4, KvmMemFlags.KVM_MEM_READONLY);
        _rig.Tracker.AddGfn(0x201);
        rom.Fill(0x20_1000, [0x5a]);

        Assert.False(_rig.Write(0, 0x20_1000, [0xa5]));
        Assert.False(_rig.Tracker.HandleTrappedAccess(0, 0, 0x20_1000, new byte[1], isWrite: false));

        Assert.Equal(new byte[] { 0x5a }, rom.Read(0x20_1000, 1));
        Assert.Empty(_notifier.Writes);
    }

    [Fact]
    public void A_write_to_an_untracked_page_of_the_slot_is_performed_but_not_reported()
    {
        Assert.True(_rig.Write(0, 0x10_6008, [9, 8, 7]));

        Assert.Equal(new byte[] { 9, 8, 7 }, _ram.Read(0x10_6008, 3));
        Assert.Empty(_notifier.Writes);
        Assert.Equal(0, _rig.Tracker.TrackedWrites);
    }
}
