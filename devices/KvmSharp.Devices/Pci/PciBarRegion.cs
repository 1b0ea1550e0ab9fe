using KvmSharp.Devices.Bus;

namespace KvmSharp.Devices.Pci;

/// <summary>
/// The bus device registered for one BAR: its own object, so that unmapping the BAR
/// (<see cref="DeviceBus.Unregister"/> removes a device's ranges) never touches another BAR served by the same device.
/// </summary>
internal sealed class PciBarRegion(IBusDevice region) : IBusDevice
{
    public void Read(ulong offset, Span<byte> data) => region.Read(offset, data);

    public void Write(ulong offset, ReadOnlySpan<byte> data) => region.Write(offset, data);
}
