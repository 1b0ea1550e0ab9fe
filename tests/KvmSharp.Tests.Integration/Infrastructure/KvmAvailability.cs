using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Tests.Integration.Infrastructure;

/// <summary>
/// Decides once whether /dev/kvm is usable. When it is not, KVM tests skip with the exact reason,
/// unless KVMSHARP_REQUIRE_KVM=1 (CI), in which case they run and fail with that reason.
/// </summary>
public static class KvmAvailability
{
    private static readonly Lazy<string?> UnavailableReason = new(Probe);
    private static readonly Lazy<KvmHostFacts?> HostFacts = new(ReadFacts);

    public static bool Required => Environment.GetEnvironmentVariable("KVMSHARP_REQUIRE_KVM") == "1";

    /// <summary>Null when usable, else why not (the exact error from opening the device).</summary>
    public static string? Reason => UnavailableReason.Value;

    public static KvmHostFacts? Facts => HostFacts.Value;

    private static string? Probe()
    {
        try
        {
            using var system = KvmSystem.Open();
            using var vm = system.CreateVm();
            return null;
        }
        catch (Exception e)
        {
            return e.Message;
        }
    }

    private static KvmHostFacts? ReadFacts()
    {
        if (Reason is not null) return null;
        using var system = KvmSystem.Open();
        return KvmHostFacts.Read(system);
    }

    /// <summary>The skip reason for a test needing KVM (and optionally a capability), or null to run it.</summary>
    public static string? SkipReason(KvmCap? capability = null, int minimum = 1)
    {
        if (Reason is not null) return Required ? null : $"/dev/kvm is not usable: {Reason}";
        if (capability is { } cap && Facts!.Value(cap) < minimum)
            return $"this host's KVM reports {cap}={Facts.Value(cap)} (needs at least {minimum})";
        return null;
    }
}
