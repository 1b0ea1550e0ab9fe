using KvmSharp.Devices.Serial;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.DirtyLog;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.Regions;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;

namespace KvmSharp.Tests.Integration.DirtyLog;

/// <summary>
/// The exact-set dirty-log checks of <see cref="DirtyLogHarvestTests"/>, shared with
/// `kvmsharp-bench dirty-check` (which runs them in the nested testbed, where VSTest starts too
/// slowly): the harvested set equals the written set, round after round, for pages written by two
/// vCPUs across three logged slots, some of them write-tracked, some written "by a device"
/// (MarkDirty); and a full dirty ring loses no entry. A failed check throws
/// <see cref="DirtyLogCheckException"/> (no xunit here, so the program can link this file).
/// </summary>
internal static class DirtyLogHarvestCheck
{
    public const int Cpus = 2;
    public const int Rounds = 4;
    public const int RingFullRounds = 3;
    private const int PagesPerSlot = 32;
    private static readonly (ushort Id, ulong Gpa)[] LoggedSlots = [(2, 0x0400_0000), (3, 0x0410_0000), (4, 0x0420_0000)];
    private static readonly ulong[] TrackedGfns = [(0x0410_0000 >> 12) + 5, (0x0410_0000 >> 12) + 6, (0x0410_0000 >> 12) + 20, (0x0400_0000 >> 12) + 31];

    /// <summary>What a passed check did: rounds run, pages harvested over them, tracked writes, ring-full exits and the ring size.</summary>
    public sealed record Result(int Rounds, int PagesHarvested, long TrackedWrites, long RingFullExits, int RingEntries);

    public static VirtualMachine CreateVm(DirtyLogMode mode, int ringEntries = DirtyLogOptions.DefaultRingEntries)
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

    /// <summary><see cref="Rounds"/> rounds of vCPU, tracked and device writes in <paramref name="mode"/>, each harvested exactly.</summary>
    public static Result HarvestRounds(DirtyLogMode mode)
    {
        var vm = CreateVm(mode);
        Require(vm.DirtyLog.Mode == mode, $"the VM logs in {vm.DirtyLog.Mode}, not {mode}");
        var gate = new RoundGate();
        var regions = LoggedSlots.Select(s => GuestMemoryRegion.CreateAnonymous(PagesPerSlot * 4096UL, $"logged-{s.Id}")).ToList();
        try
        {
            for (int i = 0; i < LoggedSlots.Length; i++)
                vm.Memslots.Apply(MemslotRequest.Create(LoggedSlots[i].Id, LoggedSlots[i].Gpa, PagesPerSlot * 4096UL, regions[i].HostAddress, KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES));
            vm.PageTracker.Register(new RecordingNotifier(vm.Memory));
            foreach (ulong gfn in TrackedGfns) vm.PageTracker.AddGfn(gfn);
            Require(vm.KernelSlots.PiecesOf(3).Count > 1, "slot 3 was not carved");
            vm.MmioBus.Register(DirtyWriterGuest.GateAddress, 8, gate, "round-gate");

            // Nothing written yet: slot creation and carving leave no dirty page behind, in any mode.
            RequireSame([], HarvestAll(vm), "before any write");

            var random = new Random(1300 + (int)mode);
            long trackedWrites = 0;
            int harvestedPages = 0;
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
                Require(gate.WaitForRound(Cpus, TimeSpan.FromSeconds(20)), $"round {round}: the vCPUs did not finish ({vm.Outcome})");

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
                RequireSame(expected, harvested, $"round {round}");
                harvestedPages += harvested.Count;
                RequireSame([], HarvestAll(vm), $"round {round}, harvested again"); // the harvest cleared what it reported
            }
            Require(vm.PageTracker.TrackedWrites == trackedWrites, $"{vm.PageTracker.TrackedWrites} tracked writes, expected {trackedWrites}");
            Require(vm.DirtyLog.RingEntriesOutsideSlots == 0, $"{vm.DirtyLog.RingEntriesOutsideSlots} ring entries outside the slots");

            for (int cpu = 0; cpu < Cpus; cpu++) DirtyWriterGuest.PostHalt(vm.Memory, cpu);
            gate.Release();
            StopCleanly(vm, gate);
            return new Result(Rounds, harvestedPages, trackedWrites, vm.DirtyLog.RingFullExits, mode == DirtyLogMode.Ring ? DirtyLogOptions.DefaultRingEntries : 0);
        }
        finally
        {
            gate.Abandon();
            vm.Dispose();
            foreach (var region in regions) region.Dispose();
        }
    }

    /// <summary>
    /// Rings of the smallest size this kernel takes, several times more distinct pages a round than they
    /// hold: KVM_EXIT_DIRTY_RING_FULL is harvested on the vCPU thread and the slot's set is still exact.
    /// </summary>
    public static Result RingFull()
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
            int harvestedPages = 0;
            for (int round = 0; round < RingFullRounds; round++)
            {
                // Several times more distinct pages than the ring holds, split over both vCPUs.
                var pages = Enumerable.Range(0, Pages).OrderBy(_ => random.Next()).Take(Math.Min(DirtyWriterGuest.MaxWritesPerRound, 4 * entries)).Select(p => Gpa + (ulong)p * 4096).ToList();
                DirtyWriterGuest.Post(vm.Memory, 0, pages[..(pages.Count / 2)]);
                DirtyWriterGuest.Post(vm.Memory, 1, pages[(pages.Count / 2)..]);
                if (round == 0) vm.Start();
                else gate.Release();
                Require(gate.WaitForRound(Cpus, TimeSpan.FromSeconds(20)), $"round {round}: the vCPUs did not finish ({vm.Outcome})");
                var bits = vm.DirtyLog.Harvest(Slot);
                var harvested = new SortedSet<ulong>(Enumerable.Range(0, Pages).Where(p => (bits[p / 64] & (1UL << (p % 64))) != 0).Select(p => Gpa + (ulong)p * 4096));
                RequireSame(new SortedSet<ulong>(pages), harvested, $"round {round}");
                harvestedPages += harvested.Count;
            }
            Require(vm.DirtyLog.RingFullExits > 0, $"no KVM_EXIT_DIRTY_RING_FULL with {entries}-entry rings");
            Require(vm.DirtyLog.RingEntriesOutsideSlots == 0, $"{vm.DirtyLog.RingEntriesOutsideSlots} ring entries outside the slots");
            for (int cpu = 0; cpu < Cpus; cpu++) DirtyWriterGuest.PostHalt(vm.Memory, cpu);
            gate.Release();
            StopCleanly(vm, gate);
            return new Result(RingFullRounds, harvestedPages, 0, vm.DirtyLog.RingFullExits, entries);
        }
        finally
        {
            gate.Abandon();
            vm.Dispose();
        }
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

    private static void StopCleanly(VirtualMachine vm, RoundGate gate)
    {
        Require(gate.WaitForFinish(Cpus, TimeSpan.FromSeconds(30)), $"the vCPUs did not finish ({vm.Outcome})");
        vm.Stop();
        Require(vm.WaitForExit(TimeSpan.FromSeconds(30), out var outcome), "the VM did not stop within 30 s");
        Require(outcome!.Kind == VmExitKind.Stopped, $"the VM ended with {outcome.Kind}, not Stopped");
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

    private static void Require(bool condition, string failure)
    {
        if (!condition) throw new DirtyLogCheckException(failure);
    }

    private static void RequireSame(SortedSet<ulong> expected, SortedSet<ulong> harvested, string when)
    {
        if (expected.SetEquals(harvested)) return;
        var missing = expected.Except(harvested).Select(Hex);
        var extra = harvested.Except(expected).Select(Hex);
        throw new DirtyLogCheckException(
            $"{when}: harvested {harvested.Count} pages, expected {expected.Count}; missing [{string.Join(' ', missing)}], extra [{string.Join(' ', extra)}]");
    }

    private static string Hex(ulong gpa) => $"0x{gpa:x}";
}
