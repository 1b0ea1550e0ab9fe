using KvmSharp.Devices.Virtio.Fs;
using Xunit;

namespace KvmSharp.Tests.Integration.Infrastructure;

/// <summary>
/// A test that runs the host's virtiofsd with its namespace sandbox: skipped with the reason when there is
/// no virtiofsd or the test does not run as root (the sandbox needs it), unless KVMSHARP_REQUIRE_KVM=1 (CI).
/// </summary>
public sealed class VirtiofsdFactAttribute : FactAttribute
{
    public static string? Virtiofsd { get; } = VirtiofsdBackend.Locate();

    public VirtiofsdFactAttribute()
    {
        string? missing = Virtiofsd is null ? $"no virtiofsd on PATH or at {VirtiofsdBackend.QemuVirtiofsdPath} ({VirtiofsdBackend.InstallHint})"
            : Environment.UserName != "root" ? "virtiofsd's namespace sandbox needs root" : null;
        if (missing is not null && !KvmAvailability.Required) Skip = missing;
    }
}
