using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;

namespace KvmSharp.Tests.Integration.Api;

/// <summary>An API test: needs /dev/kvm (skips with the exact reason, fails under KVMSHARP_REQUIRE_KVM=1) and curl.</summary>
public sealed class ApiFactAttribute : FactAttribute
{
    public ApiFactAttribute() => Skip = KvmAvailability.SkipReason() ?? Curl.Missing();

    /// <summary>Also connect as another uid: needs root (to switch) and setpriv (util-linux).</summary>
    public bool AsAnotherUid
    {
        get => false;
        set
        {
            if (!value || Skip is not null) return;
            if (Environment.UserName != "root") Skip = $"connecting as another uid needs root to switch to it (running as {Environment.UserName})";
            else if (!File.Exists("/usr/bin/setpriv")) Skip = "connecting as another uid needs /usr/bin/setpriv (util-linux), which is missing";
        }
    }
}
