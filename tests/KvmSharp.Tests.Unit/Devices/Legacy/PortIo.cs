using KvmSharp.Devices.Bus;

namespace KvmSharp.Tests.Unit.Devices.Legacy;

/// <summary>One-byte port accesses, so tests read like the guest code they imitate (inb/outb).</summary>
internal static class PortIo
{
    public static byte ReadByteAt(this IBusDevice device, ulong offset)
    {
        Span<byte> data = stackalloc byte[1];
        device.Read(offset, data);
        return data[0];
    }

    public static void WriteByteAt(this IBusDevice device, ulong offset, byte value)
    {
        ReadOnlySpan<byte> data = [value];
        device.Write(offset, data);
    }

    public static byte Inb(this DeviceBus bus, ushort port)
    {
        Span<byte> data = stackalloc byte[1];
        bus.Read(port, data);
        return data[0];
    }

    public static void Outb(this DeviceBus bus, ushort port, byte value)
    {
        ReadOnlySpan<byte> data = [value];
        bus.Write(port, data);
    }
}
