namespace KvmSharp.Devices.Bus;

/// <summary>
/// A device mapped on a port-I/O or MMIO bus. It sees offsets within its own range only,
/// never absolute addresses and never KVM, so it can be tested without /dev/kvm.
/// Both calls run on vCPU threads and must not allocate.
/// </summary>
public interface IBusDevice
{
    /// <summary>Fill <paramref name="data"/> (1, 2, 4 or 8 bytes) with the value at <paramref name="offset"/>.</summary>
    void Read(ulong offset, Span<byte> data);

    /// <summary>Accept a guest write of <paramref name="data"/> at <paramref name="offset"/>.</summary>
    void Write(ulong offset, ReadOnlySpan<byte> data);
}
