using KvmSharp.Kvm.Interop;
using Xunit;

namespace KvmSharp.Tests.Integration.Infrastructure;

/// <summary>A test on the real /dev/kvm: skipped with the exact reason when KVM (or a capability) is missing.</summary>
public sealed class KvmFactAttribute : FactAttribute
{
    public KvmFactAttribute() => Skip = KvmAvailability.SkipReason();

    private KvmCap? _requires;
    private int _minimum = 1;

    /// <summary>Also require a capability (compared on the VM fd): the test skips when the host lacks it.</summary>
    public KvmCap Requires
    {
        get => _requires ?? default;
        set
        {
            _requires = value;
            Skip = KvmAvailability.SkipReason(value, _minimum);
        }
    }

    /// <summary>The least value <see cref="Requires"/> must report (default 1).</summary>
    public int MinimumValue
    {
        get => _minimum;
        set
        {
            _minimum = value;
            if (_requires is { } cap) Skip = KvmAvailability.SkipReason(cap, value);
        }
    }
}

public sealed class KvmTheoryAttribute : TheoryAttribute
{
    public KvmTheoryAttribute() => Skip = KvmAvailability.SkipReason();
}
