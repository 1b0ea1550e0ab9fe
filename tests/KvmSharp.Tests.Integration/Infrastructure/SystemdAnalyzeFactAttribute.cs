using Xunit;

namespace KvmSharp.Tests.Integration.Infrastructure;

/// <summary>A test that runs systemd-analyze: skipped with the reason when it is missing, except in CI (.ci/run installs it).</summary>
public sealed class SystemdAnalyzeFactAttribute : FactAttribute
{
    public static string? SystemdAnalyze { get; } =
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(dir => Path.Combine(dir, "systemd-analyze")).FirstOrDefault(File.Exists);

    public SystemdAnalyzeFactAttribute()
    {
        // CI (KVMSHARP_REQUIRE_KVM=1) installs it: there a missing one fails the test instead of skipping it.
        if (SystemdAnalyze is null && !KvmAvailability.Required) Skip = "systemd-analyze is not on PATH (apt-get install systemd)";
    }
}
