using KvmSharp.Devices.Serial;
using Xunit;
using static KvmSharp.Tests.Unit.Devices.UartRegister;

namespace KvmSharp.Tests.Unit.Devices;

public sealed class Serial16550LoopbackTests
{
    private const byte Loopback = 0x10;
    private const byte Dtr = 0x01;
    private const byte Rts = 0x02;
    private const byte Out1 = 0x04;
    private const byte Out2 = 0x08;

    private readonly CapturingSerialSink _sink = new();
    private readonly Serial16550 _uart;

    public Serial16550LoopbackTests() => _uart = new Serial16550(_sink);

    [Fact]
    public void In_loopback_THR_writes_come_back_in_RBR_and_not_out_of_the_port()
    {
        _uart.WriteRegister(ModemControl, Loopback);

        _uart.WriteRegister(Data, 0x55);
        _uart.WriteRegister(Data, 0xaa);

        Assert.Equal(0x01, _uart.ReadRegister(LineStatus) & 0x01);
        Assert.Equal(0x55, _uart.ReadRegister(Data));
        Assert.Equal(0xaa, _uart.ReadRegister(Data));
        Assert.Equal(0, _sink.Length);
    }

    [Fact]
    public void Leaving_loopback_sends_bytes_to_the_sink_again()
    {
        _uart.WriteRegister(ModemControl, Loopback);
        _uart.WriteRegister(Data, (byte)'x');
        _uart.WriteRegister(ModemControl, 0);

        _uart.WriteRegister(Data, (byte)'y');

        Assert.Equal("y", _sink.Text);
    }

    [Theory]
    [InlineData(Dtr, 0x20)]  // DSR
    [InlineData(Rts, 0x10)]  // CTS
    [InlineData(Out1, 0x40)] // RI
    [InlineData(Out2, 0x80)] // DCD
    [InlineData(Rts | Out2, 0x90)] // what Linux checks when it probes a port
    [InlineData(Dtr | Rts | Out1 | Out2, 0xf0)]
    [InlineData(0, 0x00)]
    public void In_loopback_MSR_lines_mirror_MCR_outputs(byte outputs, byte expectedLines)
    {
        _uart.WriteRegister(ModemControl, (byte)(Loopback | outputs));

        Assert.Equal(expectedLines, _uart.ReadRegister(ModemStatus) & 0xf0);
    }

    [Fact]
    public void Line_changes_set_delta_bits_until_MSR_is_read()
    {
        // From the connected state (CTS, DSR, DCD high) into loopback with all outputs low: three lines fall.
        _uart.WriteRegister(ModemControl, Loopback);

        Assert.Equal(0x0b, _uart.ReadRegister(ModemStatus)); // DDCD | DDSR | DCTS, lines low
        Assert.Equal(0x00, _uart.ReadRegister(ModemStatus));

        _uart.WriteRegister(ModemControl, Loopback | Rts);
        Assert.Equal(0x11, _uart.ReadRegister(ModemStatus)); // CTS | DCTS
    }

    [Fact]
    public void Ring_indicator_reports_only_its_trailing_edge()
    {
        _uart.WriteRegister(ModemControl, Loopback);
        _uart.ReadRegister(ModemStatus);

        _uart.WriteRegister(ModemControl, Loopback | Out1);
        Assert.Equal(0x40, _uart.ReadRegister(ModemStatus)); // RI rose: no TERI

        _uart.WriteRegister(ModemControl, Loopback);
        Assert.Equal(0x04, _uart.ReadRegister(ModemStatus)); // RI fell: TERI
    }

    [Fact]
    public void Leaving_loopback_restores_the_connected_modem_lines()
    {
        _uart.WriteRegister(ModemControl, Loopback);
        _uart.WriteRegister(ModemControl, 0);

        Assert.Equal(0xb0, _uart.ReadRegister(ModemStatus) & 0xf0);
    }

    [Fact]
    public void Host_input_is_refused_in_loopback_because_the_input_pin_is_disconnected()
    {
        _uart.WriteRegister(ModemControl, Loopback);

        Assert.False(_uart.EnqueueInput((byte)'q'));
        Assert.Equal(0, _uart.EnqueueInput("qq"u8));
        Assert.Equal(0, _uart.ReadRegister(LineStatus) & 0x03); // no data, no overrun
    }

    [Fact]
    public void Loopback_overrun_sets_OE()
    {
        _uart.WriteRegister(ModemControl, Loopback);
        for (int i = 0; i <= Serial16550.ReceiveFifoCapacity; i++)
        {
            _uart.WriteRegister(Data, (byte)i);
        }

        Assert.Equal(0x02, _uart.ReadRegister(LineStatus) & 0x02);
    }
}
