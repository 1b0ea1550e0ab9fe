using KvmSharp.Devices.Bus;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices;

public sealed class DeviceBusRegistrationTests
{
    [Fact]
    public void Adjacent_ranges_are_accepted_and_listed_in_address_order()
    {
        var bus = new DeviceBus("pio");
        bus.Register(0x20, 0x10, new RecordingBusDevice(), "high");
        bus.Register(0x00, 0x10, new RecordingBusDevice(), "low");
        bus.Register(0x10, 0x10, new RecordingBusDevice(), "middle");

        Assert.Equal(
            [new BusRange(0x00, 0x10, "low"), new BusRange(0x10, 0x10, "middle"), new BusRange(0x20, 0x10, "high")],
            bus.Ranges);
    }

    [Theory]
    [InlineData(0x100ul, 0x10ul)] // identical
    [InlineData(0x0f8ul, 0x10ul)] // starts before, ends inside
    [InlineData(0x108ul, 0x10ul)] // starts inside, ends after
    [InlineData(0x0f0ul, 0x40ul)] // contains the existing range
    [InlineData(0x104ul, 0x04ul)] // inside the existing range
    [InlineData(0x10ful, 0x01ul)] // last byte only
    [InlineData(0x0fful, 0x02ul)] // first byte only
    public void Overlapping_range_is_refused_with_both_devices_and_ranges_named(ulong baseAddress, ulong length)
    {
        var bus = new DeviceBus("pio");
        var existing = new RecordingBusDevice(0x11);
        bus.Register(0x100, 0x10, existing, "existing-uart");
        IReadOnlyList<BusRange> before = bus.Ranges;

        var intruder = new RecordingBusDevice(0x22);
        var error = Assert.Throws<ArgumentException>(() => bus.Register(baseAddress, length, intruder, "intruder"));

        Assert.Contains("existing-uart", error.Message);
        Assert.Contains("intruder", error.Message);
        Assert.Contains("[0x100..0x10f]", error.Message);
        Assert.Contains($"[0x{baseAddress:x}..0x{baseAddress + length - 1:x}]", error.Message);

        // The refusal changed nothing: same ranges, accesses still reach the original device.
        Assert.Equal(before, bus.Ranges);
        Span<byte> data = stackalloc byte[1];
        Assert.True(bus.Read(0x100, data));
        Assert.Equal(0x11, data[0]);
        Assert.True(bus.Read(0x10f, data));
        Assert.Equal(0x11, data[0]);
        Assert.Equal(0, intruder.Reads);
    }

    [Fact]
    public void Zero_length_is_refused()
    {
        var bus = new DeviceBus("mmio");

        var error = Assert.Throws<ArgumentException>(() => bus.Register(0x1000, 0, new RecordingBusDevice(), "empty"));

        Assert.Contains("empty", error.Message);
        Assert.Empty(bus.Ranges);
    }

    [Theory]
    [InlineData(0xffff_ffff_ffff_fff0ul, 0x11ul)]
    [InlineData(ulong.MaxValue, 2ul)]
    [InlineData(2ul, ulong.MaxValue)]
    public void Range_wrapping_past_the_end_of_the_address_space_is_refused(ulong baseAddress, ulong length)
    {
        var bus = new DeviceBus("mmio");

        var error = Assert.Throws<ArgumentException>(() => bus.Register(baseAddress, length, new RecordingBusDevice(), "wrapper"));

        Assert.Contains("wrapper", error.Message);
        Assert.Contains($"0x{baseAddress:x}", error.Message);
        Assert.Empty(bus.Ranges);
    }

    [Fact]
    public void Range_ending_at_the_last_address_is_accepted_and_reachable()
    {
        var bus = new DeviceBus("mmio");
        var device = new RecordingBusDevice(0x5a);
        bus.Register(0xffff_ffff_ffff_fff0, 0x10, device, "top");

        Span<byte> data = stackalloc byte[1];
        Assert.True(bus.Read(ulong.MaxValue, data));

        Assert.Equal(0x5a, data[0]);
        Assert.Equal(0xful, device.LastOffset);
    }

    [Fact]
    public void Whole_address_space_can_be_one_range()
    {
        var bus = new DeviceBus("mmio");
        var device = new RecordingBusDevice();
        bus.Register(0, ulong.MaxValue, device, "almost-all");

        Span<byte> data = stackalloc byte[1];
        Assert.True(bus.Read(ulong.MaxValue - 1, data));
        Assert.False(bus.Read(ulong.MaxValue, data));
        Assert.Equal(ulong.MaxValue - 1, device.LastOffset);
    }

    [Fact]
    public void Unregister_removes_every_range_of_the_device_and_only_those()
    {
        var bus = new DeviceBus("pio");
        var twoWindows = new RecordingBusDevice(0x01);
        var other = new RecordingBusDevice(0x02);
        bus.Register(0x10, 4, twoWindows, "window-a");
        bus.Register(0x20, 4, other, "other");
        bus.Register(0x30, 4, twoWindows, "window-b");

        Assert.True(bus.Unregister(twoWindows));

        Assert.Equal([new BusRange(0x20, 4, "other")], bus.Ranges);
        Span<byte> data = stackalloc byte[1];
        Assert.False(bus.Read(0x10, data));
        Assert.False(bus.Read(0x30, data));
        Assert.True(bus.Read(0x20, data));
        Assert.Equal(0x02, data[0]);
    }

    [Fact]
    public void Unregister_of_an_unknown_device_reports_false_and_changes_nothing()
    {
        var bus = new DeviceBus("pio");
        bus.Register(0x10, 4, new RecordingBusDevice(), "known");

        Assert.False(bus.Unregister(new RecordingBusDevice()));
        Assert.Single(bus.Ranges);
    }

    [Fact]
    public void Freed_range_can_be_registered_again()
    {
        var bus = new DeviceBus("pio");
        var first = new RecordingBusDevice(0x01);
        bus.Register(0x10, 4, first, "first");
        bus.Unregister(first);

        bus.Register(0x10, 4, new RecordingBusDevice(0x02), "second");

        Span<byte> data = stackalloc byte[1];
        Assert.True(bus.Read(0x12, data));
        Assert.Equal(0x02, data[0]);
    }

    [Fact]
    public void Null_device_or_empty_name_is_refused()
    {
        var bus = new DeviceBus("pio");

        Assert.Throws<ArgumentNullException>(() => bus.Register(0x10, 1, null!, "nothing"));
        Assert.Throws<ArgumentException>(() => bus.Register(0x10, 1, new RecordingBusDevice(), ""));
        Assert.Empty(bus.Ranges);
    }

    [Fact]
    public void Range_reports_inclusive_last_address_in_hex()
    {
        var range = new BusRange(0x3f8, 8, "serial0");

        Assert.Equal(0x3fful, range.LastAddress);
        Assert.Equal("'serial0' [0x3f8..0x3ff]", range.ToString());
    }
}
