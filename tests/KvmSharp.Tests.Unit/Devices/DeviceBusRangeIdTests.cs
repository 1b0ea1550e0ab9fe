using KvmSharp.Devices.Bus;
using KvmSharp.Tests.Unit.Vcpus;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices;

/// <summary>Range ids: handed out in registration order, never reused, reported by the dispatching overloads.</summary>
public sealed class DeviceBusRangeIdTests
{
    [Fact]
    public void Each_registration_gets_the_next_id_and_accesses_report_it()
    {
        var bus = new DeviceBus("pio");
        var device = new RecordingIoDevice();
        bus.Register(0x3f8, 8, device, "uart");
        bus.Register(0x60, 1, device, "kbd");

        Assert.Equal(2, bus.RangeIdCount);
        Assert.True(bus.Write(0x3fb, [1], out int uart));
        Assert.True(bus.Read(0x60, new byte[1], out int kbd));
        Assert.Equal((0, 1), (uart, kbd));
        Assert.Equal("uart", bus.RangeById(0).Name);
        Assert.False(bus.Read(0x61, new byte[1], out int none));
        Assert.Equal(-1, none);
    }

    [Fact]
    public void Ids_are_not_reused_after_unregistering_and_a_refused_registration_takes_none()
    {
        var bus = new DeviceBus("mmio");
        var first = new RecordingIoDevice();
        bus.Register(0x1000, 0x100, first, "first");
        Assert.Throws<ArgumentException>(() => bus.Register(0x1080, 0x100, new RecordingIoDevice(), "overlapping"));
        Assert.True(bus.Unregister(first));
        bus.Register(0x1000, 0x100, new RecordingIoDevice(), "second");

        Assert.Equal(2, bus.RangeIdCount);
        Assert.True(bus.Write(0x1000, [0], out int id));
        Assert.Equal(1, id);
        Assert.Equal("first", bus.RangeById(0).Name);
    }
}
