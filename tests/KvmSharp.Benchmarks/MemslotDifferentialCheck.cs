using System.Diagnostics;
using KvmSharp.Kvm;
using KvmSharp.Tests.Integration.Memslots;

namespace KvmSharp.Benchmarks;

/// <summary>
/// `kvmsharp-bench memslot-differential`: the differential of DifferentialMemslotTests as a program,
/// for the nested testbed (the only KVM here with address space 1, SMM), where VSTest's host starts
/// too slowly. Prints the address spaces, the summary and "memslot-differential: all passed", or the
/// shrunk failing sequence and exit status 1.
/// </summary>
public static class MemslotDifferentialCheck
{
    public const int DefaultSteps = 20_000;

    public static int Run(int steps, int fillOneIn)
    {
        using var system = KvmSystem.Open();
        using var differential = new MemslotDifferential(system);
        Console.WriteLine($"address spaces: {differential.Limits.AddressSpaces}, ids per address space: {differential.Limits.SlotsPerAddressSpace}");
        var clock = Stopwatch.StartNew();
        try
        {
            differential.Run(steps, maxLength: 120, fillOneIn, Console.WriteLine, Environment.GetEnvironmentVariable("KVMSHARP_DIFFERENTIAL_SEED"));
        }
        catch (Exception e) when (e is not KvmUnavailableException)
        {
            Console.WriteLine($"FAILED after {differential.Steps} steps: {e.Message}");
            if (e.InnerException is { } cause) Console.WriteLine(cause.Message);
            return 1;
        }
        Console.WriteLine($"{differential.Summary()}; {clock.Elapsed.TotalSeconds:F1} s");
        Console.WriteLine("memslot-differential: all passed");
        return 0;
    }
}
