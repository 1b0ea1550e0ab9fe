using System.Buffers.Binary;
using KvmSharp.Devices.Bus;

namespace KvmSharp.Tests.Unit.Devices.Pci;

/// <summary>Little-endian 8/16/32/64-bit guest accesses on a bus device, as a driver's readb/readw/readl/writel issue them.</summary>
internal static class BusAccess
{
    public static byte Read8(this IBusDevice device, ulong offset)
    {
        Span<byte> data = stackalloc byte[1];
        device.Read(offset, data);
        return data[0];
    }

    public static ushort Read16(this IBusDevice device, ulong offset)
    {
        Span<byte> data = stackalloc byte[2];
        device.Read(offset, data);
        return BinaryPrimitives.ReadUInt16LittleEndian(data);
    }

    public static uint Read32(this IBusDevice device, ulong offset)
    {
        Span<byte> data = stackalloc byte[4];
        device.Read(offset, data);
        return BinaryPrimitives.ReadUInt32LittleEndian(data);
    }

    public static void Write8(this IBusDevice device, ulong offset, byte value) => device.Write(offset, [value]);

    public static void Write16(this IBusDevice device, ulong offset, ushort value)
    {
        Span<byte> data = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(data, value);
        device.Write(offset, data);
    }

    public static void Write32(this IBusDevice device, ulong offset, uint value)
    {
        Span<byte> data = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(data, value);
        device.Write(offset, data);
    }

    public static uint Read32(this DeviceBus bus, ulong address)
    {
        Span<byte> data = stackalloc byte[4];
        bus.Read(address, data);
        return BinaryPrimitives.ReadUInt32LittleEndian(data);
    }

    public static ushort Read16(this DeviceBus bus, ulong address)
    {
        Span<byte> data = stackalloc byte[2];
        bus.Read(address, data);
        return BinaryPrimitives.ReadUInt16LittleEndian(data);
    }

    public static byte Read8(this DeviceBus bus, ulong address)
    {
        Span<byte> data = stackalloc byte[1];
        bus.Read(address, data);
        return data[0];
    }

    public static void Write32(this DeviceBus bus, ulong address, uint value)
    {
        Span<byte> data = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(data, value);
        bus.Write(address, data);
    }

    public static void Write16(this DeviceBus bus, ulong address, ushort value)
    {
        Span<byte> data = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(data, value);
        bus.Write(address, data);
    }

    public static void Write8(this DeviceBus bus, ulong address, byte value) => bus.Write(address, [value]);
}
