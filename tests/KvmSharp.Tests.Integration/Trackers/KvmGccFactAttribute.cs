using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;

namespace KvmSharp.Tests.Integration.Trackers;

/// <summary>A test that needs /dev/kvm and gcc (the C tracker client): skipped with the reason when either is missing.</summary>
public sealed class KvmGccFactAttribute : FactAttribute
{
    public KvmGccFactAttribute() => Skip = KvmGcc.SkipReason();
}

/// <summary>The theory form of <see cref="KvmGccFactAttribute"/>.</summary>
public sealed class KvmGccTheoryAttribute : TheoryAttribute
{
    public KvmGccTheoryAttribute() => Skip = KvmGcc.SkipReason();
}

internal static class KvmGcc
{
    // KVMSHARP_REQUIRE_KVM=1 (CI) turns a missing gcc into a failure, as for GccFact.
    public static string? SkipReason() =>
        KvmAvailability.SkipReason() ?? (GccFactAttribute.Gcc is null && !KvmAvailability.Required ? "gcc is not on PATH (apt-get install gcc)" : null);
}
