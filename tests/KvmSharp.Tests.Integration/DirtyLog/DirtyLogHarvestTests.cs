using KvmSharp.Devices.Serial;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.DirtyLog;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.Regions;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using Xunit;

namespace KvmSharp.Tests.Integration.DirtyLog;

/// <summary>
/// The harvested set equals the written set, exactly, round after round, in every dirty-log mode:
/// pages written by two vCPUs across three logged slots, some of them write-tracked (carved into
/// read-only kernel pieces, the write applied by KvmSharp), and some written "by a device" (MarkDirty).
/// </summary>
public sealed class DirtyLogHarvestTests
{
    private const int Cpus = 2;
    private const int Rounds = 4;
    private const int PagesPerSlot = 32;
    private static readonly (ushort Id, ulong Gpa)[] LoggedSlots = [(2, 0x0400_0000), (3, 0x0410_0000), (4, 0x0420_0000)];
    private static readonly ulong[] TrackedGfns = [(0x0410_0000 >> 12) + 5, (0x0410_0000 >> 12) + 6, (0x0410_0000 >> 12) + 20, (0x0400_0000 >> 12) + 31];


    private static VirtualMachine CreateVm(DirtyLogMode mode, int ringEntries = DirtyLogOptions.DefaultRingEntries)
    {
        var vm = VirtualMachine.Create(new VmConfig
        {
            MemoryBytes = 16UL << 20,
            Cpus = Cpus,
            Image = DirtyWriterGuest.Image,
            SerialSink = new CapturingSerialSink(),
            DirtyLog = new DirtyLogOptions { Mode = mode, RingEntries = ringEntries },
        });
        DirtyWriterGuest.PrepareUserMode(vm.Memory);
        return vm;
    }

    [KvmFact]
    public void Bitmap_harvests_exactly_the_pages_written_by_the_vcpus_the_tracker_and_devices() => HarvestRounds(DirtyLogMode.Bitmap);

    [KvmFact(Requires = KvmCap.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, MinimumValue = 3)]
    public void ManualProtect_harvests_exactly_the_pages_written_by_the_vcpus_the_tracker_and_devices() => HarvestRounds(DirtyLogMode.ManualProtect);

    [KvmFact(Requires = KvmCap.KVM_CAP_DIRTY_LOG_RING)]
    public void Ring_harvests_exactly_the_pages_written_by_the_vcpus_the_tracker_and_devices() => HarvestRounds(DirtyLogMode.Ring);

    private static void HarvestRounds(DirtyLogMode mode)
    {
        var vm = CreateVm(mode);
        Assert.Equal(mode, vm.DirtyLog.Mode);
        var gate = new RoundGate();
        var regions = LoggedSlots.Select(s => GuestMemoryRegion.CreateAnonymous(PagesPerSlot * 4096UL, $"logged-{s.Id}")).ToList();
        try
        {
            for (int i = 0; i < LoggedSlots.Length; i++)
                vm.Memslots.Apply(MemslotRequest.Create(LoggedSlots[i].Id, LoggedSlots[i].Gpa, PagesPerSlot * 4096UL, regions[i].HostAddress, KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES));
            vm.PageTracker.Register(new RecordingNotifier(vm.Memory));
            foreach (ulong gfn in TrackedGfns) vm.PageTracker.AddGfn(gfn);
            Assert.True(vm.KernelSlots.PiecesOf(3).Count > 1, "slot 3 was not carved");
            vm.MmioBus.Register(DirtyWriterGuest.GateAddress, 8, gate, "round-gate");

            // Nothing written yet: slot creation and carving leave no dirty page behind, in any mode.
            Assert.Empty(HarvestAll(vm));

            var random = new Random(1300 + (int)mode);
            long trackedWrites = 0;
            for (int round = 0; round < Rounds; round++)
            {
                var expected = new SortedSet<ulong>();
                for (int cpu = 0; cpu < Cpus; cpu++)
                {
                    var pages = RandomPages(random, 0.2).ToList();
                    if (round % 2 == cpu) pages.Add(TrackedGfns[random.Next(TrackedGfns.Length)] << 12); // a tracked page each round
                    var gpas = pages.Select(p => p + 8UL * (ulong)random.Next(512)).ToList();
                    DirtyWriterGuest.Post(vm.Memory, cpu, gpas);
                    expected.UnionWith(pages);
                    trackedWrites += pages.Count(p => TrackedGfns.Contains(p >> 12));
                }

                if (round == 0) vm.Start();
                else gate.Release();
                Assert.True(gate.WaitForRound(Cpus, TimeSpan.FromSeconds(20)), $"round {round}: the vCPUs did not finish ({vm.Outcome})");

                // Device writes land while the guest is parked: bytes into the backing memory, then MarkDirty.
                foreach (ulong page in RandomPages(random, 0.05))
                {
                    vm.Memory.WriteUInt64(page + 16, 0xD1D1D1D1);
                    vm.DirtyLog.MarkDirty(page + 16, 8);
                    expected.Add(page);
                }
                // A device write spanning two pages of slot 4 marks both.
                ulong spanning = LoggedSlots[2].Gpa + (ulong)random.Next(PagesPerSlot - 1) * 4096 + 4090;
                vm.DirtyLog.MarkDirty(spanning, 12);
                expected.Add(spanning & ~0xFFFUL);
                expected.Add((spanning & ~0xFFFUL) + 4096);

                var harvested = HarvestAll(vm);
                Assert.Equal(expected.Select(Hex), harvested.Select(Hex));
                Assert.Empty(HarvestAll(vm)); // the harvest cleared what it reported
            }
            Assert.Equal(trackedWrites, vm.PageTracker.TrackedWrites);
            Assert.Equal(0, vm.DirtyLog.RingEntriesOutsideSlots);

            for (int cpu = 0; cpu < Cpus; cpu++) DirtyWriterGuest.PostHalt(vm.Memory, cpu);
            gate.Release();
            Assert.True(gate.WaitForFinish(Cpus, TimeSpan.FromSeconds(30)), $"the vCPUs did not finish ({vm.Outcome})");
            vm.Stop();
            Assert.True(vm.WaitForExit(TimeSpan.FromSeconds(30), out var outcome));
            Assert.Equal(VmExitKind.Stopped, outcome!.Kind);
        }
        finally
        {
            gate.Abandon();
            vm.Dispose();
            foreach (var region in regions) region.Dispose();
        }
    }

    [KvmFact(Requires = KvmCap.KVM_CAP_DIRTY_LOG_RING)]
    public void A_full_ring_exits_is_harvested_on_the_vcpu_thread_and_loses_no_entry()
    {
        const ushort Slot = 5;
        const ulong Gpa = 0x0800_0000;
        const int Pages = 2048;
        var (vm, entries) = SmallestRingVm();
        using var region = GuestMemoryRegion.CreateAnonymous(Pages * 4096UL, "ring-full");
        var gate = new RoundGate();
        try
        {
            vm.Memslots.Apply(MemslotRequest.Create(Slot, Gpa, Pages * 4096UL, region.HostAddress, KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES));
            vm.MmioBus.Register(DirtyWriterGuest.GateAddress, 8, gate, "round-gate");
            var random = new Random(64);
            for (int round = 0; round < 3; round++)
            {
                // Several times more distinct pages than the ring holds, split over both vCPUs.
                var pages = Enumerable.Range(0, Pages).OrderBy(_ => random.Next()).Take(Math.Min(DirtyWriterGuest.MaxWritesPerRound, 4 * entries)).Select(p => Gpa + (ulong)p * 4096).ToList();
                DirtyWriterGuest.Post(vm.Memory, 0, pages[..(pages.Count / 2)]);
                DirtyWriterGuest.Post(vm.Memory, 1, pages[(pages.Count / 2)..]);
                if (round == 0) vm.Start();
                else gate.Release();
                Assert.True(gate.WaitForRound(Cpus, TimeSpan.FromSeconds(20)), $"round {round}: the vCPUs did not finish ({vm.Outcome})");
                var bits = vm.DirtyLog.Harvest(Slot);
                var harvested = Enumerable.Range(0, Pages).Where(p => (bits[p / 64] & (1UL << (p % 64))) != 0).Select(p => Gpa + (ulong)p * 4096);
                Assert.Equal(pages.Order().Select(Hex), harvested.Select(Hex));
            }
            Assert.True(vm.DirtyLog.RingFullExits > 0, $"no KVM_EXIT_DIRTY_RING_FULL with {entries}-entry rings");
            Assert.Equal(0, vm.DirtyLog.RingEntriesOutsideSlots);
            for (int cpu = 0; cpu < Cpus; cpu++) DirtyWriterGuest.PostHalt(vm.Memory, cpu);
            gate.Release();
            Assert.True(gate.WaitForFinish(Cpus, TimeSpan.FromSeconds(30)), $"the vCPUs did not finish ({vm.Outcome})");
            vm.Stop();
            Assert.True(vm.WaitForExit(TimeSpan.FromSeconds(30), out var outcome));
            Assert.Equal(VmExitKind.Stopped, outcome!.Kind);
        }
        finally
        {
            gate.Abandon();
            vm.Dispose();
        }
    }

    [KvmFact]
    public void Harvesting_a_slot_that_does_not_log_or_does_not_exist_is_refused_and_changes_nothing()
    {
        using var vm = CreateVm(DirtyLogMode.Bitmap);
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
        var error = Assert.Throws<ArgumentException>(() => CreateVm(DirtyLogMode.Ring, ringEntries: 1000));
        Assert.Contains("dirty ring entries: 1000 is invalid", error.Message);
        var tooSmall = Assert.Throws<ArgumentException>(() => CreateVm(DirtyLogMode.Ring, ringEntries: 64));
        Assert.Contains("power of two from 256", tooSmall.Message);
    }

    [KvmFact]
    public void The_default_mode_is_manual_protect_where_the_kernel_offers_it_else_bitmap()
    {
        using var vm = VirtualMachine.Create(new VmConfig { MemoryBytes = 4UL << 20, Image = DirtyWriterGuest.Image, SerialSink = new CapturingSerialSink() });
        bool manual = (KvmAvailability.Facts!.Value(KvmCap.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) & 3) == 3;
        Assert.Equal(manual ? DirtyLogMode.ManualProtect : DirtyLogMode.Bitmap, vm.DirtyLog.Mode);
    }

    // The smallest ring this kernel takes: one page of entries, or more where it reserves extra (e.g. Intel PML).
    private static (VirtualMachine Vm, int Entries) SmallestRingVm()
    {
        for (int entries = DirtyLogOptions.MinimumRingEntries; ; entries *= 2)
        {
            try
            {
                return (CreateVm(DirtyLogMode.Ring, entries), entries);
            }
            catch (ArgumentException e) when (e.Message.Contains("refused a ring") && entries < 8192)
            {
            }
        }
    }

    private static IEnumerable<ulong> RandomPages(Random random, double probability)
    {
        foreach (var (_, gpa) in LoggedSlots)
            for (int page = 0; page < PagesPerSlot; page++)
                if (random.NextDouble() < probability) yield return gpa + (ulong)page * 4096;
    }

    private static SortedSet<ulong> HarvestAll(VirtualMachine vm)
    {
        var pages = new SortedSet<ulong>();
        foreach (var (id, gpa) in LoggedSlots)
        {
            var bits = vm.DirtyLog.Harvest(id);
            for (int page = 0; page < PagesPerSlot; page++)
                if ((bits[page / 64] & (1UL << (page % 64))) != 0) pages.Add(gpa + (ulong)page * 4096);
        }
        return pages;
    }

    private static string Hex(ulong gpa) => $"0x{gpa:x}";
}
