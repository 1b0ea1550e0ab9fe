namespace KvmSharp.Vmm.Machine.Allocation;

/// <summary>A machine resource (an address window, ports, GSIs, PCI slots) has no room left for a device's request.</summary>
public sealed class ResourceExhaustedException(string resource, string message) : InvalidOperationException(message)
{
    /// <summary>Which pool ran out, e.g. "mmio32".</summary>
    public string Resource { get; } = resource;
}
