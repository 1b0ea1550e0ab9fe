using System.Diagnostics;
using System.Globalization;
using System.Numerics;
using KvmSharp.Devices.Bus;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.DirtyLog;
using KvmSharp.Memory.Memslots;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Machine;

namespace KvmSharp.Benchmarks;

/// <summary>
/// `scripts/bench.sh dirty`, managed half: the <see cref="DirtyBenchGuest"/> in a 4 GiB VM whose two RAM
/// slots log dirty pages in the given mode; at each round's MMIO signal the vCPU thread harvests both
/// slots through <see cref="DirtyPageLog.Harvest(ushort, Span{ulong}, ushort)"/> (carving and all), as
/// scripts/bench/dirty_harvest.c does with the bare ioctls.
/// </summary>
/// <remarks>
/// Timed, identical in the C reference: one harvest of both slots (bitmap: 2 KVM_GET_DIRTY_LOG; clear:
/// 2 KVM_GET_DIRTY_LOG + 2 KVM_CLEAR_DIRTY_LOG; ring: read the ring, mark entries RESET,
/// KVM_RESET_DIRTY_RINGS), while the guest is parked in the exit. Round 0 (first touch, JIT) is not
/// counted. Each counted harvest must report exactly <see cref="DirtyBenchGuest.DirtyPagesPerRound"/>
/// pages. Prints harvest_ns (median wall time), harvest_ns_min, harvest_cpu_ns and harvest_cpu_ns_min (the
/// harvesting thread's CPU time: the ioctls' kernel work runs on it, and it leaves out time the thread sat
/// preempted on a busy host), dirty_pages, rounds.
/// </remarks>
internal static class DirtyHarvestBench
{
    public const int RingEntries = 16384;

    public static DirtyLogMode ParseMode(string mode) => mode switch
    {
        "bitmap" => DirtyLogMode.Bitmap,
        "clear" => DirtyLogMode.ManualProtect,
        "ring" => DirtyLogMode.Ring,
        _ => throw new BenchException($"MODE must be bitmap, clear or ring, not '{mode}'"),
    };

    public static VirtualMachine CreateVm(byte[] guest, DirtyLogMode mode)
    {
        var vm = VirtualMachine.Create(new VmConfig
        {
            MemoryBytes = DirtyBenchGuest.MemoryBytes,
            Image = new GuestImage(guest, DirtyBenchGuest.LoadAddress, DirtyBenchGuest.LoadAddress, CpuMode.Long, "dirty-bench"),
            SerialSink = new NullSerialSink(),
            DirtyLog = new DirtyLogOptions { Mode = mode, RingEntries = RingEntries },
        });
        try
        {
            DirtyBenchGuest.PrepareUserMode(vm.Memory);
            foreach (var slot in vm.Memslots.Current.Slots(0).ToList())
                vm.Memslots.Apply(MemslotRequest.Create(slot.Id, slot.GuestPhysAddr, slot.Size, slot.HostAddress, KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES));
            if (vm.DirtyLog.Mode != mode) throw new BenchException($"the VM logs in {vm.DirtyLog.Mode} mode, not {mode}");
            return vm;
        }
        catch
        {
            vm.Dispose();
            throw;
        }
    }

    public static int Run(string modeName, string file, int rounds)
    {
        var mode = ParseMode(modeName);
        using var vm = CreateVm(File.ReadAllBytes(file), mode);
        var harvester = new RoundHarvester(vm, rounds + 1);
        vm.MmioBus.Register(DirtyBenchGuest.SignalAddress, 8, harvester, "harvest-signal");
        vm.Start();
        if (!harvester.Done.Wait(TimeSpan.FromSeconds(300)))
            throw new BenchException($"the guest finished {harvester.Completed} of {rounds + 1} rounds in 300 s ({vm.Outcome})");
        vm.Stop("benchmark done");
        vm.WaitForExit(TimeSpan.FromSeconds(10), out _);
        if (harvester.Error is { } error) throw new BenchException(error);

        Console.WriteLine($"rounds={rounds}");
        Console.WriteLine($"dirty_pages={DirtyBenchGuest.DirtyPagesPerRound}");
        Console.WriteLine($"ring_full_exits={vm.DirtyLog.RingFullExits}");
        PrintTimes("harvest_ns", harvester.HarvestNs);
        PrintTimes("harvest_cpu_ns", harvester.HarvestCpuNs);
        return 0;
    }

    // NAME_min= and NAME= (median) of every round but the first.
    private static void PrintTimes(string name, List<long> times)
    {
        var counted = times.Skip(1).Order().ToArray();
        var inv = CultureInfo.InvariantCulture;
        Console.WriteLine(string.Create(inv, $"{name}_min={counted[0]}"));
        Console.WriteLine(string.Create(inv, $"{name}={Median(counted)}"));
    }

    private static double Median(long[] sorted) =>
        sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2.0;

    /// <summary>The signal register: on the vCPU thread, harvest both slots (timed), check the count, resume the guest.</summary>
    private sealed class RoundHarvester(VirtualMachine vm, int rounds) : IBusDevice
    {
        private readonly ulong[] _low = new ulong[(DirtyBenchGuest.LowRamBytes >> 12) / 64];
        private readonly ulong[] _high = new ulong[((DirtyBenchGuest.MemoryBytes - DirtyBenchGuest.LowRamBytes) >> 12) / 64];
        public readonly List<long> HarvestNs = new();
        public readonly List<long> HarvestCpuNs = new();
        public readonly ManualResetEventSlim Done = new(false);
        public int Completed;
        public string? Error;

        public void Read(ulong offset, Span<byte> data) => data.Clear();

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            if (Done.IsSet) return;
            long start = Stopwatch.GetTimestamp(), cpuStart = ThreadClock.NowNs();
            vm.DirtyLog.Harvest(0, _low);
            vm.DirtyLog.Harvest(1, _high);
            long cpuEnd = ThreadClock.NowNs(), end = Stopwatch.GetTimestamp();
            HarvestNs.Add((long)((end - start) * (1e9 / Stopwatch.Frequency)));
            HarvestCpuNs.Add(cpuEnd - cpuStart);
            long pages = PopCount(_low) + PopCount(_high);
            if (Completed > 0 && pages != DirtyBenchGuest.DirtyPagesPerRound && Error is null)
                Error = $"round {Completed}: the harvest reported {pages} dirty pages, the guest wrote {DirtyBenchGuest.DirtyPagesPerRound}";
            if (++Completed == rounds) Done.Set();
        }

        private static long PopCount(ulong[] words)
        {
            long count = 0;
            foreach (ulong word in words) count += BitOperations.PopCount(word);
            return count;
        }
    }
}
