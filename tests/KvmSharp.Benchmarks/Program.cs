using KvmSharp.Benchmarks;
using KvmSharp.Kvm;
using KvmSharp.Memory.PageTracking;

// kvmsharp-bench: the managed half of scripts/bench.sh (which builds, runs rounds and prints ratios).
const string Usage = """
    usage: kvmsharp-bench COMMAND ...
      write-guest exit-roundtrip N FILE [UNROLL]   write the 16-bit guest making N port-0x80 exits
      exit-roundtrip FILE [WARMUPS]                run FILE under KvmSharp; prints ns_per_exit=X (WARMUPS default 2)
      exit-roundtrip-raw FILE                      the same loop on KvmSharp.Kvm alone (diagnostic)
      gfn-lookup [SLOTS...]                        ns per MemslotSnapshot.TryFindByGfn (default 1 1000 32000 slots)
      write-guest tracked-write N FILE [UNROLL [unchanged]]
                                                   write the 16-bit guest making N dword writes to the tracked page 0x8000
                                                   (unchanged: each write stores the bytes memory holds; diagnostic)
      tracked-write FILE [WARMUPS]                 run FILE under KvmSharp with gfn 8 tracked; prints ns_per_write=X
      tracked-write-oop FILE WARMUPS CLIENT [oop-first]
                                                   FILE with gfn 8 tracked in-process, then by CLIENT (the C tracker client)
                                                   synchronously from another process; prints inproc_ns_per_write=, oop_ns_per_write=
      write-guest dirty FILE                       write the dirty-logging guest (DirtyBenchGuest) shared with dirty_harvest.c
      dirty MODE FILE [ROUNDS]                     MODE = bitmap|clear|ring: harvest time of a 4 GiB guest dirtying 1 % per round;
                                                   prints harvest_ns=X (median of ROUNDS, default 10)
      dirty-throughput MODE [SECONDS]              guest pages written per second while the host harvests back to back (default 3 s)
      dirty-check                                  the exact-set dirty-log harvest checks of the integration tests in every
                                                   mode this KVM offers (bitmap, manual-protect, ring, ring-full)
      tracking-check [ITERATIONS]                  issue 9's page-tracking checks: no locked update lost on 2 and 4 vCPUs, stores
                                                   KVM cannot emulate completed, one report per instruction (default 1000)
      tracking-scale [trap-accesses|trap-writes]   single and batch AddGfn/RemoveGfn cost at 1k/10k/100k scattered tracked gfns
                                                   with a vCPU running, and the kernel slots used; last line ratio=X.XX (10k/1k)
      smm-check                                    SMM memslots (as_id 1) and tracking in both address spaces on this KVM
      multiboot-kernel DIR MEMORY_MIB CPUS         write the multiboot test kernel and its module into DIR; print how to run it
      memslot-differential [STEPS [FILL_ONE_IN]]   the memslot differential of the integration tests (default 20000 steps,
                                                   no sequence starting near the id limit; FILL_ONE_IN=N: one in N does)
      tracking-ops [OPS [SECONDS [CPUS]]]          AddGfn/RemoveGfn per second while CPUS vCPUs spin writing the region
                                                   (default 2000 operations, at most 10 s, 2 vCPUs)
      vsock-check SOCKET [MIB [SECONDS]]           host side of tests/testbed/vsock-tests.sh against a guest running vsock-guest.c
                                                   and `kvmsharp run --vsock cid=N,socket=SOCKET` (default 64 MiB, 600 s)
    """;

try
{
    return args switch
    {
        ["write-guest", "exit-roundtrip", var n, var file] => WriteGuest(n, file, null),
        ["write-guest", "exit-roundtrip", var n, var file, var unroll] => WriteGuest(n, file, unroll),
        ["exit-roundtrip", var file] => ExitRoundtripBench.Run(file, 2),
        ["exit-roundtrip", var file, var warmups] => ExitRoundtripBench.Run(file, ParseInt(warmups, "WARMUPS", 0)),
        ["exit-roundtrip-raw", var file] => RawExitRoundtripBench.Run(file, 2),
        ["write-guest", "tracked-write", var n, var file] => WriteTrackedWriteGuest(n, file, null),
        ["write-guest", "tracked-write", var n, var file, var unroll] => WriteTrackedWriteGuest(n, file, unroll),
        ["write-guest", "tracked-write", var n, var file, var unroll, "unchanged"] => WriteTrackedWriteGuest(n, file, unroll, unchanged: true),
        ["tracked-write", var file] => TrackedWriteBench.Run(file, 2),
        ["tracked-write", var file, var warmups] => TrackedWriteBench.Run(file, ParseInt(warmups, "WARMUPS", 0)),
        ["tracked-write-oop", var file, var warmups, var client] => TrackedWriteOopBench.Run(file, ParseInt(warmups, "WARMUPS", 0), client, false),
        ["tracked-write-oop", var file, var warmups, var client, "oop-first"] => TrackedWriteOopBench.Run(file, ParseInt(warmups, "WARMUPS", 0), client, true),
        ["tracking-ops", .. var rest] when rest.Length <= 3 => TrackingOpsBench.Run(
            rest.Length > 0 ? ParseInt(rest[0], "OPS", 2) : TrackingOpsBench.DefaultOperations,
            rest.Length > 1 ? ParseInt(rest[1], "SECONDS", 1) : TrackingOpsBench.DefaultSeconds,
            rest.Length > 2 ? ParseInt(rest[2], "CPUS", 1) : TrackingOpsBench.DefaultCpus),
        ["write-guest", "dirty", var file] => WriteDirtyGuest(file),
        ["dirty", var mode, var file] => DirtyHarvestBench.Run(mode, file, 10),
        ["dirty", var mode, var file, var rounds] => DirtyHarvestBench.Run(mode, file, ParseInt(rounds, "ROUNDS", 1)),
        ["dirty-throughput", var mode] => DirtyThroughputBench.Run(mode, 3),
        ["dirty-throughput", var mode, var seconds] => DirtyThroughputBench.Run(mode, ParseInt(seconds, "SECONDS", 1)),
        ["dirty-check"] => DirtyLogCheck.Run(),
        ["smm-check"] => SmmCheck.Run(),
        ["multiboot-kernel", var directory, var memory, var cpus] => MultibootKernelCommand.Run(directory, ParseInt(memory, "MEMORY_MIB", 2), ParseInt(cpus, "CPUS", 1)),
        ["tracking-check"] => TrackingCheck.Run(1000),
        ["tracking-scale"] => TrackingScaleBench.Run(TrackingMode.TrapAccesses),
        ["tracking-scale", "trap-accesses"] => TrackingScaleBench.Run(TrackingMode.TrapAccesses),
        ["tracking-scale", "trap-writes"] => TrackingScaleBench.Run(TrackingMode.TrapWrites),
        ["tracking-check", var iterations] => TrackingCheck.Run(ParseInt(iterations, "ITERATIONS", 1)),
        ["memslot-differential", .. var rest] when rest.Length <= 2 => MemslotDifferentialCheck.Run(
            rest.Length > 0 ? ParseInt(rest[0], "STEPS", 1) : MemslotDifferentialCheck.DefaultSteps,
            rest.Length > 1 ? ParseInt(rest[1], "FILL_ONE_IN", 0) : 0),
        ["vsock-check", var socket] => VsockCheck.Run(socket, 64, 600),
        ["vsock-check", var socket, var mib] => VsockCheck.Run(socket, ParseInt(mib, "MIB", 1), 600),
        ["vsock-check", var socket, var mib, var seconds] => VsockCheck.Run(socket, ParseInt(mib, "MIB", 1), ParseInt(seconds, "SECONDS", 1)),
        ["gfn-lookup"] => GfnLookupBench.Run(GfnLookupBench.DefaultSizes),
        ["gfn-lookup", .. var sizes] => GfnLookupBench.Run(sizes.Select(s => ParseInt(s, "SLOTS", 1)).ToArray()),
        _ => Fail(Usage, 2),
    };
}
catch (BenchException e)
{
    return Fail($"kvmsharp-bench: {e.Message}", 1);
}
catch (KvmException e) // includes KvmUnavailableException: /dev/kvm missing or not ours to open
{
    return Fail($"kvmsharp-bench: {e.Message}", 1);
}
catch (IOException e)
{
    return Fail($"kvmsharp-bench: {e.Message}", 1);
}

static int WriteGuest(string n, string file, string? unroll)
{
    int exits = ParseInt(n, "N", 1);
    int factor = unroll is null ? ExitRoundtripGuest.DefaultUnroll : ParseInt(unroll, "UNROLL", 1);
    File.WriteAllBytes(file, ExitRoundtripGuest.Assemble(exits, factor));
    return 0;
}

static int WriteTrackedWriteGuest(string n, string file, string? unroll, bool unchanged = false)
{
    int writes = ParseInt(n, "N", 1);
    int factor = unroll is null ? TrackedWriteGuest.DefaultUnroll : ParseInt(unroll, "UNROLL", 1);
    if (factor > 256 || writes < factor) throw new BenchException($"UNROLL must be 1..256 and at most N, not {factor}");
    File.WriteAllBytes(file, TrackedWriteGuest.Assemble(writes, factor, unchanged));
    return 0;
}

static int WriteDirtyGuest(string file)
{
    File.WriteAllBytes(file, DirtyBenchGuest.Assemble());
    return 0;
}

static int ParseInt(string text, string what, int minimum) =>
    int.TryParse(text, out int value) && value >= minimum
        ? value
        : throw new BenchException($"{what} must be an integer >= {minimum}, not '{text}'");

static int Fail(string message, int code)
{
    Console.Error.WriteLine(message);
    return code;
}

namespace KvmSharp.Benchmarks
{
    internal sealed class BenchException(string message) : Exception(message);
}
