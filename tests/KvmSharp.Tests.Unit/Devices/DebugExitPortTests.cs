using KvmSharp.Devices.Bus;
using KvmSharp.Devices.Debug;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices;

public sealed class DebugExitPortTests
{
    [Theory]
    [InlineData(0x00)]
    [InlineData(0x01)]
    [InlineData(0x7f)]
    [InlineData(0xff)]
    public void Guest_write_hands_the_byte_to_the_callback_and_records_it(byte status)
    {
        var received = new List<byte>();
        var port = new DebugExitPort(received.Add);
        Assert.Null(port.LastStatus);

        port.Write(0, [status]);

        Assert.Equal([status], received);
        Assert.Equal(status, port.LastStatus);
    }

    [Fact]
    public void Write_through_the_port_bus_reaches_the_callback()
    {
        var received = new List<byte>();
        var bus = new DeviceBus("pio");
        bus.Register(0xf4, DebugExitPort.RegisterBlockLength, new DebugExitPort(received.Add), "debug-exit");

        Assert.True(bus.Write(0xf4, [0x31]));

        Assert.Equal([0x31], received);
    }

    [Fact]
    public void Only_the_first_byte_of_a_wider_write_is_the_status()
    {
        var received = new List<byte>();
        var port = new DebugExitPort(received.Add);

        port.Write(0, [0x02, 0x03, 0x04, 0x05]);

        Assert.Equal([0x02], received);
        Assert.Equal(2, port.LastStatus);
    }

    [Fact]
    public void Every_write_is_reported_and_the_last_one_is_kept()
    {
        var received = new List<byte>();
        var port = new DebugExitPort(received.Add);

        port.Write(0, [0x10]);
        port.Write(0, [0x20]);

        Assert.Equal([0x10, 0x20], received);
        Assert.Equal(0x20, port.LastStatus);
    }

    [Fact]
    public void Reads_return_zero_and_do_not_trigger_the_callback()
    {
        int calls = 0;
        var port = new DebugExitPort(_ => calls++);

        Span<byte> data = [0xaa, 0xbb];
        port.Read(0, data);

        Assert.Equal([0x00, 0x00], data.ToArray());
        Assert.Equal(0, calls);
        Assert.Null(port.LastStatus);
    }

    [Fact]
    public void Empty_write_is_ignored()
    {
        int calls = 0;
        var port = new DebugExitPort(_ => calls++);

        port.Write(0, []);

        Assert.Equal(0, calls);
        Assert.Null(port.LastStatus);
    }
}

public sealed class QemuDebugExitPortTests
{
    [Theory]
    [InlineData(0u, 1)]
    [InlineData(0x15u, 43)]
    [InlineData(0x7Fu, 255)]
    [InlineData(0x80u, 1)]
    [InlineData(0xC0DE0300u, 1)]
    public void A_qemu_port_ends_with_value_shifted_left_or_one(uint value, int status)
    {
        var received = new List<(uint, byte)>();
        var port = new DebugExitPort(4, (v, s) => received.Add((v, s)));
        Span<byte> data = stackalloc byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(data, value);

        port.Write(0, data);

        Assert.Equal([(value, (byte)status)], received);
        Assert.Equal(status, port.LastStatus);
        Assert.Equal(4UL, port.Width);
    }

    [Fact]
    public void A_byte_or_word_write_is_the_value_wherever_it_lands_in_the_range()
    {
        var received = new List<uint>();
        var port = new DebugExitPort(2, (v, _) => received.Add(v));
        port.Write(1, [0x21]);
        port.Write(0, [0x34, 0x12]);
        Assert.Equal([0x21u, 0x1234u], received);
        Assert.Equal(DebugExitPort.QemuStatus(0x1234), port.LastStatus);
    }

    [Fact]
    public void A_width_other_than_1_2_or_4_is_refused() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new DebugExitPort(3, (_, _) => { }));

    [Theory]
    [InlineData("port=0xf4,width=4,qemu=on", 0xf4, 4, true)]
    [InlineData("qemu=on", 0x501, 2, true)]
    [InlineData("port=1281", 0x501, 1, false)]
    [InlineData("width=2,qemu=off", 0x501, 2, false)]
    public void Debug_exit_values_parse_with_their_defaults(string text, int port, int width, bool qemu)
    {
        Assert.True(DebugExitSpec.TryParse(text, out var spec, out string? error), error);
        Assert.Equal(new DebugExitSpec((ushort)port, width, qemu), spec);
    }
}
