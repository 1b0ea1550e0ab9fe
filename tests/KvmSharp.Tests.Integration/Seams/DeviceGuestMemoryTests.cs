using KvmSharp.Devices.Memory;
using KvmSharp.Devices.Serial;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.DirtyLog;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Memory.Regions;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Memory;
using Xunit;

namespace KvmSharp.Tests.Integration.Seams;

/// <summary>
/// Device writes through <see cref="DeviceGuestMemory"/> on a real VM: they land, appear in the dirty
/// log's harvest in every mode the host offers, reach page-track notifiers marked as device writes,
/// and a range that leaves guest RAM (or enters a read-only slot) fails with nothing written.
/// </summary>
public sealed class DeviceGuestMemoryTests
{
    // Two logged slots back to back, so one access can span them, and a read-only slot after a gap.
    private const ushort SlotA = 2, SlotB = 3, RomSlot = 4;
    private const ulong GpaA = 0x0400_0000, GpaB = 0x0401_0000, RomGpa = 0x0410_0000, SlotBytes = 0x10000;

    private sealed class Rig : IDisposable
    {
        public readonly VirtualMachine Vm;
        public readonly DeviceGuestMemory Memory;
        private readonly List<GuestMemoryRegion> _regions = new();

        public Rig(DirtyLogMode mode)
        {
            Vm = VirtualMachine.Create(new VmConfig
            {
                MemoryBytes = 16UL << 20,
                Image = TestGuest.LongMode(a => TestGuest.ExitWith(a, 0)),
                SerialSink = new CapturingSerialSink(),
                DirtyLog = new DirtyLogOptions { Mode = mode },
            });
            Add(SlotA, GpaA, KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES);
            Add(SlotB, GpaB, KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES);
            Add(RomSlot, RomGpa, KvmMemFlags.KVM_MEM_READONLY);
            Memory = new DeviceGuestMemory(Vm.Memslots, Vm.DirtyLog, Vm.PageTracker);
        }

        private void Add(ushort id, ulong gpa, uint flags)
        {
            var region = GuestMemoryRegion.CreateAnonymous(SlotBytes, $"device-test-{id}");
            _regions.Add(region);
            Vm.Memslots.Apply(MemslotRequest.Create(id, gpa, SlotBytes, region.HostAddress, flags));
        }

        public HashSet<ulong> HarvestGfns(ushort slot, ulong baseGpa)
        {
            var bits = Vm.DirtyLog.Harvest(slot);
            var gfns = new HashSet<ulong>();
            for (int page = 0; page < (int)(SlotBytes >> 12); page++)
                if ((bits[page >> 6] & (1UL << (page & 63))) != 0) gfns.Add((baseGpa >> 12) + (ulong)page);
            return gfns;
        }

        public void Dispose()
        {
            Vm.Dispose();
            foreach (var region in _regions) region.Dispose();
        }
    }

    [KvmFact]
    public void Bitmap_mode_harvests_device_writes() => DeviceWritesAreHarvested(DirtyLogMode.Bitmap);

    [KvmFact(Requires = KvmCap.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, MinimumValue = 3)]
    public void ManualProtect_mode_harvests_device_writes() => DeviceWritesAreHarvested(DirtyLogMode.ManualProtect);

    [KvmFact(Requires = KvmCap.KVM_CAP_DIRTY_LOG_RING)]
    public void Ring_mode_harvests_device_writes() => DeviceWritesAreHarvested(DirtyLogMode.Ring);

    private static void DeviceWritesAreHarvested(DirtyLogMode mode)
    {
        using var rig = new Rig(mode);
        Assert.Equal(mode, rig.Vm.DirtyLog.Mode);
        rig.HarvestGfns(SlotA, GpaA);
        rig.HarvestGfns(SlotB, GpaB);

        // One write on page 3 of A, one spanning the last page of A and the first of B, one by host address.
        Assert.True(rig.Memory.TryWrite(new GuestAddress(GpaA + 3 * 4096 + 10), [1, 2, 3]));
        var spanning = Enumerable.Range(0, 100).Select(i => (byte)i).ToArray();
        Assert.True(rig.Memory.TryWrite(new GuestAddress(GpaB - 50), spanning));
        Assert.True(rig.Memory.TryGetHostAddress(new GuestAddress(GpaB + 7 * 4096), 4096, forWrite: true, out nint host));
        unsafe { new Span<byte>((void*)host, 4096).Fill(0xEE); }
        rig.Memory.CommitWrite(new GuestAddress(GpaB + 7 * 4096), 4096);

        Assert.Equal(new HashSet<ulong> { (GpaA >> 12) + 3, (GpaB >> 12) - 1 }, rig.HarvestGfns(SlotA, GpaA));
        Assert.Equal(new HashSet<ulong> { GpaB >> 12, (GpaB >> 12) + 7 }, rig.HarvestGfns(SlotB, GpaB));
        Assert.Empty(rig.HarvestGfns(SlotA, GpaA)); // the harvest cleared them

        var back = new byte[100];
        Assert.True(rig.Memory.TryRead(new GuestAddress(GpaB - 50), back));
        Assert.Equal(spanning, back);
        Assert.Equal(0xEEUL, rig.Vm.Memory.ReadUInt64(GpaB + 7 * 4096) & 0xFF);
    }

    [KvmFact]
    public void A_write_to_a_tracked_gfn_reaches_the_notifier_as_a_device_write_after_it_landed()
    {
        using var rig = new Rig(DirtyLogMode.Bitmap);
        var notifier = new RecordingNotifier(rig.Vm.Memory);
        rig.Vm.PageTracker.Register(notifier);
        ulong trackedGfn = (GpaA >> 12) + 5;
        rig.Vm.PageTracker.AddGfn(trackedGfn);

        // 8 bytes straddling the end of the untracked page 4 into tracked page 5: only page 5's part is reported.
        ulong start = (trackedGfn << 12) - 3;
        byte[] data = [10, 11, 12, 13, 14, 15, 16, 17];
        Assert.True(rig.Memory.TryWrite(new GuestAddress(start), data));
        var write = Assert.Single(notifier.Writes);
        Assert.Equal(trackedGfn << 12, write.Gpa);
        Assert.Equal(data[3..], write.Bytes);
        Assert.Equal(PageTracker.DeviceWriter, write.Vcpu);
        Assert.Equal(data[3..], write.MemoryDuringCall); // reported after the bytes reached guest memory

        // Zero-copy is refused on a tracked page (the write must be reported), allowed next to it.
        Assert.False(rig.Memory.TryGetHostAddress(new GuestAddress(trackedGfn << 12), 16, forWrite: true, out _));
        Assert.True(rig.Memory.TryGetHostAddress(new GuestAddress(trackedGfn << 12), 16, forWrite: false, out _));
        Assert.True(rig.Memory.TryGetHostAddress(new GuestAddress((trackedGfn + 1) << 12), 16, forWrite: true, out _));
        Assert.True(rig.Memory.TryWrite(new GuestAddress((trackedGfn + 1) << 12), [1]));
        Assert.Single(notifier.Writes);
    }

    [KvmFact]
    public void Accesses_that_leave_guest_ram_or_write_a_read_only_slot_fail_and_change_nothing()
    {
        using var rig = new Rig(DirtyLogMode.Bitmap);
        rig.HarvestGfns(SlotB, GpaB);
        var before = new byte[64];
        Assert.True(rig.Memory.TryRead(new GuestAddress(GpaB + SlotBytes - 32), before[..32]));

        // Runs off the end of B into the unbacked gap: refused as a whole.
        Assert.False(rig.Memory.TryWrite(new GuestAddress(GpaB + SlotBytes - 32), Enumerable.Repeat((byte)0x77, 64).ToArray()));
        var after = new byte[32];
        Assert.True(rig.Memory.TryRead(new GuestAddress(GpaB + SlotBytes - 32), after));
        Assert.Equal(before[..32], after);
        Assert.Empty(rig.HarvestGfns(SlotB, GpaB));
        Assert.False(rig.Memory.TryRead(new GuestAddress(GpaB + SlotBytes - 32), new byte[64]));

        Assert.False(rig.Memory.TryWrite(new GuestAddress(RomGpa), [1]));                  // read-only slot
        Assert.True(rig.Memory.TryRead(new GuestAddress(RomGpa), new byte[8]));            // ... readable
        Assert.False(rig.Memory.TryGetHostAddress(new GuestAddress(RomGpa), 8, forWrite: true, out _));
        Assert.False(rig.Memory.TryWrite(new GuestAddress(ulong.MaxValue - 3), new byte[8])); // wraps
        Assert.False(rig.Memory.TryGetHostAddress(new GuestAddress(GpaB - 8), 16, forWrite: false, out _)); // two slots: not one host piece
    }
}
