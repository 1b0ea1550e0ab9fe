using KvmSharp.Devices.Serial;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.DirtyLog;
using KvmSharp.Memory.Memslots;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using Xunit;

namespace KvmSharp.Tests.Integration.DirtyLog;

/// <summary>
/// The harvested set equals the written set, exactly, round after round, in every dirty-log mode:
/// pages written by two vCPUs across three logged slots, some of them write-tracked (carved into
/// read-only kernel pieces, the write applied by KvmSharp), and some written "by a device" (MarkDirty).
/// The checks live in <see cref="DirtyLogHarvestCheck"/>, which `kvmsharp-bench dirty-check` runs in the testbed.
/// </summary>
public sealed class DirtyLogHarvestTests
{
    [KvmFact]
    public void Bitmap_harvests_exactly_the_pages_written_by_the_vcpus_the_tracker_and_devices() => HarvestRounds(DirtyLogMode.Bitmap);

    [KvmFact(Requires = KvmCap.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, MinimumValue = 3)]
    public void ManualProtect_harvests_exactly_the_pages_written_by_the_vcpus_the_tracker_and_devices() => HarvestRounds(DirtyLogMode.ManualProtect);

    [KvmFact(Requires = KvmCap.KVM_CAP_DIRTY_LOG_RING)]
    public void Ring_harvests_exactly_the_pages_written_by_the_vcpus_the_tracker_and_devices() => HarvestRounds(DirtyLogMode.Ring);

    private static void HarvestRounds(DirtyLogMode mode)
    {
        var result = DirtyLogHarvestCheck.HarvestRounds(mode);
        Assert.Equal(DirtyLogHarvestCheck.Rounds, result.Rounds);
        Assert.True(result.PagesHarvested > 0 && result.TrackedWrites > 0, $"{result}");
    }

    [KvmFact(Requires = KvmCap.KVM_CAP_DIRTY_LOG_RING)]
    public void A_full_ring_exits_is_harvested_on_the_vcpu_thread_and_loses_no_entry()
    {
        var result = DirtyLogHarvestCheck.RingFull();
        Assert.True(result.RingFullExits > 0, $"{result}");
    }

    [KvmFact]
    public void Harvesting_a_slot_that_does_not_log_or_does_not_exist_is_refused_and_changes_nothing()
    {
        using var vm = DirtyLogHarvestCheck.CreateVm(DirtyLogMode.Bitmap);
        var missing = Assert.Throws<MemslotRefusedException>(() => vm.DirtyLog.Harvest(9));
        Assert.Equal(Errno.ENOENT, missing.Errno);
        var unlogged = Assert.Throws<MemslotRefusedException>(() => vm.DirtyLog.Harvest(0)); // RAM, not logging
        Assert.Equal(Errno.ENOENT, unlogged.Errno);
        Assert.Contains("KVM_MEM_LOG_DIRTY_PAGES", unlogged.Message);
        var outOfRange = Assert.Throws<MemslotRefusedException>(() => vm.DirtyLog.Harvest(ushort.MaxValue));
        Assert.Equal(Errno.EINVAL, outOfRange.Errno);
        // A device write to memory that no logged slot maps is ignored, not an error.
        vm.DirtyLog.MarkDirty(0x1000, 4096);
        Assert.Throws<ArgumentOutOfRangeException>(() => vm.DirtyLog.MarkDirty(ulong.MaxValue - 2, 8));
    }

    [KvmFact]
    public void A_ring_size_the_kernel_cannot_take_is_refused_with_the_setting_named()
    {
        var error = Assert.Throws<ArgumentException>(() => DirtyLogHarvestCheck.CreateVm(DirtyLogMode.Ring, ringEntries: 1000));
        Assert.Contains("dirty ring entries: 1000 is invalid", error.Message);
        var tooSmall = Assert.Throws<ArgumentException>(() => DirtyLogHarvestCheck.CreateVm(DirtyLogMode.Ring, ringEntries: 64));
        Assert.Contains("power of two from 256", tooSmall.Message);
    }

    [KvmFact]
    public void The_default_mode_is_manual_protect_where_the_kernel_offers_it_else_bitmap()
    {
        using var vm = VirtualMachine.Create(new VmConfig { MemoryBytes = 4UL << 20, Image = DirtyWriterGuest.Image, SerialSink = new CapturingSerialSink() });
        bool manual = (KvmAvailability.Facts!.Value(KvmCap.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) & 3) == 3;
        Assert.Equal(manual ? DirtyLogMode.ManualProtect : DirtyLogMode.Bitmap, vm.DirtyLog.Mode);
    }
}
