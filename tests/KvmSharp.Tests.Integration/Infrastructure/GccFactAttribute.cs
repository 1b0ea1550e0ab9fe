using Xunit;

namespace KvmSharp.Tests.Integration.Infrastructure;

/// <summary>A test that compiles C against the system's &lt;linux/kvm.h&gt;: skipped with the reason when gcc or the header is missing (never in CI).</summary>
public sealed class GccFactAttribute : FactAttribute
{
    public static string? Gcc { get; } =
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(dir => Path.Combine(dir, "gcc")).FirstOrDefault(File.Exists);

    public GccFactAttribute()
    {
        string? missing = Gcc is null ? "gcc is not on PATH" : !File.Exists("/usr/include/linux/kvm.h") ? "/usr/include/linux/kvm.h is missing" : null;
        if (missing is not null && !KvmAvailability.Required) Skip = $"{missing} (apt-get install gcc linux-libc-dev)";
    }
}
