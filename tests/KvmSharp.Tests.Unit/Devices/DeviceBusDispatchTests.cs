using KvmSharp.Devices.Bus;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices;

public sealed class DeviceBusDispatchTests
{
    [Theory]
    [InlineData(0x3f8ul, 0ul)]
    [InlineData(0x3fdul, 5ul)]
    [InlineData(0x3fful, 7ul)]
    public void Read_reaches_the_owning_device_with_the_offset_from_its_base(ulong address, ulong expectedOffset)
    {
        var bus = new DeviceBus("pio");
        var below = new RecordingBusDevice(0x01);
        var target = new RecordingBusDevice(0x02);
        var above = new RecordingBusDevice(0x03);
        bus.Register(0x3f0, 8, below, "below");
        bus.Register(0x3f8, 8, target, "target");
        bus.Register(0x400, 8, above, "above");

        Span<byte> data = stackalloc byte[2];
        Assert.True(bus.Read(address, data));

        Assert.Equal(expectedOffset, target.LastOffset);
        Assert.Equal(2, target.LastLength);
        Assert.Equal([0x02, 0x02], data.ToArray());
        Assert.Equal(0, below.Reads);
        Assert.Equal(0, above.Reads);
    }

    [Fact]
    public void Write_reaches_the_owning_device_with_offset_and_data()
    {
        var bus = new DeviceBus("mmio");
        var device = new RecordingBusDevice();
        bus.Register(0xd000_0000, 0x1000, device, "virtio");

        Assert.True(bus.Write(0xd000_0070, [0xde, 0xad, 0xbe, 0xef]));

        Assert.Equal(0x70ul, device.LastOffset);
        Assert.Equal([0xde, 0xad, 0xbe, 0xef], device.LastWritten);
        Assert.Equal(0, bus.UnhandledWrites);
    }

    [Fact]
    public void Dispatch_finds_each_of_many_devices()
    {
        var bus = new DeviceBus("pio");
        var devices = new RecordingBusDevice[64];
        for (int i = 0; i < devices.Length; i++)
        {
            devices[i] = new RecordingBusDevice((byte)i);

            // Register out of order so the sorted insertion is exercised.
            int slot = (i * 37) % devices.Length;
            bus.Register((ulong)slot * 0x10, 0x10, devices[i], $"device{i}");
        }

        Span<byte> data = stackalloc byte[1];
        for (int i = 0; i < devices.Length; i++)
        {
            int slot = (i * 37) % devices.Length;
            Assert.True(bus.Read((ulong)slot * 0x10 + 3, data));
            Assert.Equal((byte)i, data[0]);
            Assert.Equal(3ul, devices[i].LastOffset);
        }
    }

    [Fact]
    public void Unclaimed_read_returns_ff_counts_and_remembers_the_address()
    {
        var bus = new DeviceBus("pio");
        var device = new RecordingBusDevice();
        bus.Register(0x60, 1, device, "keyboard");

        Span<byte> data = [0x00, 0x11, 0x22, 0x33];
        Assert.False(bus.Read(0x61, data));

        Assert.Equal([0xff, 0xff, 0xff, 0xff], data.ToArray());
        Assert.Equal(1, bus.UnhandledReads);
        Assert.Equal(0, bus.UnhandledWrites);
        Assert.Equal(0x61ul, bus.LastUnhandledAddress);
        Assert.Equal(0, device.Reads);
    }

    [Fact]
    public void Unclaimed_read_uses_the_configured_unmapped_value()
    {
        var bus = new DeviceBus("mmio", unmappedReadValue: 0x00);

        Span<byte> data = [0xaa, 0xaa];
        Assert.False(bus.Read(0x1234, data));

        Assert.Equal([0x00, 0x00], data.ToArray());
    }

    [Fact]
    public void Unclaimed_write_is_dropped_counted_and_remembered()
    {
        var bus = new DeviceBus("pio");
        var left = new RecordingBusDevice();
        var right = new RecordingBusDevice();
        bus.Register(0x70, 2, left, "rtc");
        bus.Register(0x80, 1, right, "post");

        Assert.False(bus.Write(0x72, [0x01]));
        Assert.False(bus.Write(0x7f, [0x02]));

        Assert.Equal(2, bus.UnhandledWrites);
        Assert.Equal(0, bus.UnhandledReads);
        Assert.Equal(0x7ful, bus.LastUnhandledAddress);
        Assert.Equal(0, left.Writes);
        Assert.Equal(0, right.Writes);
    }

    [Fact]
    public void Empty_bus_reports_every_access_as_unhandled()
    {
        var bus = new DeviceBus("pio");

        Span<byte> data = stackalloc byte[1];
        Assert.False(bus.Read(0, data));
        Assert.False(bus.Write(ulong.MaxValue, data));

        Assert.Equal(1, bus.UnhandledReads);
        Assert.Equal(1, bus.UnhandledWrites);
        Assert.Equal(ulong.MaxValue, bus.LastUnhandledAddress);
    }
}
