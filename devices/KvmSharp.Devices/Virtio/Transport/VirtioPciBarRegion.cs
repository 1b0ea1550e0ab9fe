using KvmSharp.Devices.Bus;

namespace KvmSharp.Devices.Virtio.Transport;

/// <summary>The MMIO face of a <see cref="VirtioPciFunction"/>'s BAR: every access goes to the function, which splits it by structure.</summary>
internal sealed class VirtioPciBarRegion(VirtioPciFunction function) : IBusDevice
{
    public void Read(ulong offset, Span<byte> data) => function.ReadBar(offset, data);

    public void Write(ulong offset, ReadOnlySpan<byte> data) => function.WriteBar(offset, data);
}
