using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;

namespace KvmSharp.Tests.Integration.Net;

/// <summary>A test that needs /dev/kvm (its guest memory is a real VM's) and root to make a namespace with a tap: skipped with the exact reason otherwise.</summary>
public sealed class NetNamespaceFactAttribute : FactAttribute
{
    public NetNamespaceFactAttribute() => Skip = KvmAvailability.SkipReason() ?? NetNamespace.Unavailable();
}
