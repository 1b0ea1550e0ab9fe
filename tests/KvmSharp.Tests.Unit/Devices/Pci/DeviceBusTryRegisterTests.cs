using KvmSharp.Devices.Bus;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Pci;

/// <summary>DeviceBus.TryRegister, the registration BARs use: guest-placed ranges never throw, and an id is reused across moves.</summary>
public sealed class DeviceBusTryRegisterTests
{
    [Fact]
    public void An_overlapping_or_wrapping_range_is_answered_with_false_and_changes_nothing()
    {
        var bus = new DeviceBus("mmio");
        bus.Register(0x1000, 0x1000, new RecordingBusDevice(0x11), "fixed");
        var bar = new RecordingBusDevice(0x22);
        int id = -1;

        Assert.False(bus.TryRegister(0x1800, 0x1000, bar, "bar", ref id));
        Assert.False(bus.TryRegister(ulong.MaxValue - 0xfff + 1, 0x2000, bar, "bar", ref id));
        Assert.Equal(-1, id);
        Assert.Equal(1, bus.RangeIdCount);
        Assert.Single(bus.Ranges);

        Assert.True(bus.TryRegister(0x2000, 0x1000, bar, "bar", ref id));
        Assert.Equal(1, id);
        Span<byte> data = stackalloc byte[1];
        Assert.True(bus.Read(0x2fff, data, out int rangeId));
        Assert.Equal((0x22, 1), (data[0], rangeId));
    }

    [Fact]
    public void A_moved_range_keeps_its_id_and_the_id_names_the_new_place()
    {
        var bus = new DeviceBus("mmio");
        var bar = new RecordingBusDevice();
        int id = -1;
        Assert.True(bus.TryRegister(0x1_0000, 0x1000, bar, "bar", ref id));

        for (ulong i = 1; i <= 100; i++)
        {
            Assert.True(bus.Unregister(bar));
            Assert.True(bus.TryRegister(0x1_0000 + i * 0x1000, 0x1000, bar, "bar", ref id));
        }

        Assert.Equal(0, id);
        Assert.Equal(1, bus.RangeIdCount);
        Assert.Equal(new BusRange(0x1_0000 + 100 * 0x1000, 0x1000, "bar"), bus.RangeById(0));
        Assert.False(bus.Read(0x1_0000, new byte[1]));
        Assert.True(bus.Read(0x1_0000 + 100 * 0x1000, new byte[1], out int rangeId));
        Assert.Equal(0, rangeId);
    }

    [Fact]
    public void Reusing_an_unknown_or_still_mapped_id_is_a_vmm_bug_and_throws()
    {
        var bus = new DeviceBus("mmio");
        var bar = new RecordingBusDevice();
        int id = -1;
        Assert.True(bus.TryRegister(0x1000, 0x1000, bar, "bar", ref id));

        int unknown = 5;
        Assert.Throws<ArgumentException>(() => bus.TryRegister(0x8000, 0x1000, bar, "bar", ref unknown));
        int stillMapped = id;
        var error = Assert.Throws<ArgumentException>(() => bus.TryRegister(0x8000, 0x1000, bar, "bar", ref stillMapped));
        Assert.Contains("still mapped", error.Message);
        Assert.Single(bus.Ranges);
    }
}
