using KvmSharp.Kvm.Interop;
using Xunit;

namespace KvmSharp.Tests.Integration.Infrastructure;

/// <summary>A test on the real /dev/kvm: skipped with the exact reason when KVM (or a capability) is missing.</summary>
public sealed class KvmFactAttribute : FactAttribute
{
    public KvmFactAttribute() => Skip = KvmAvailability.SkipReason();

    /// <summary>Also require a capability (compared on the VM fd): the test skips when the host lacks it.</summary>
    public KvmCap Requires
    {
        get => default;
        init => Skip = KvmAvailability.SkipReason(value);
    }
}

public sealed class KvmTheoryAttribute : TheoryAttribute
{
    public KvmTheoryAttribute() => Skip = KvmAvailability.SkipReason();
}
