using Xunit;

namespace KvmSharp.Tests.Integration.Infrastructure;

/// <summary>
/// A test that compiles C against a newer &lt;linux/kvm.h&gt; than the system's, whose include arguments
/// (`-I DIR -I DIR`) come in KVMSHARP_NEWER_KVM_HEADERS (.ci/run sets it from
/// scripts/kvm-headers/fetch-newer-kvm-headers.sh); skipped with that reason when it is not set.
/// </summary>
public sealed class NewerKvmHeadersFactAttribute : FactAttribute
{
    public const string Variable = "KVMSHARP_NEWER_KVM_HEADERS";

    public static IReadOnlyList<string> IncludeArguments { get; } =
        (Environment.GetEnvironmentVariable(Variable) ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries);

    public NewerKvmHeadersFactAttribute()
    {
        if (GccFactAttribute.Gcc is null) Skip = "gcc is not on PATH (apt-get install gcc)";
        else if (IncludeArguments.Count == 0)
            Skip = $"{Variable} is not set: run scripts/kvm-headers/fetch-newer-kvm-headers.sh and export its output as {Variable}";
    }
}
