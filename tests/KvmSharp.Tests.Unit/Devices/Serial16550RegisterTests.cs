using KvmSharp.Devices.Serial;
using Xunit;
using static KvmSharp.Tests.Unit.Devices.UartRegister;

namespace KvmSharp.Tests.Unit.Devices;

public sealed class Serial16550RegisterTests
{
    private const byte DivisorLatchAccess = 0x80;
    private const byte LsrDataReady = 0x01;
    private const byte LsrOverrun = 0x02;
    private const byte LsrThrEmpty = 0x20;
    private const byte LsrTransmitterEmpty = 0x40;

    private readonly CapturingSerialSink _sink = new();
    private readonly Serial16550 _uart;

    public Serial16550RegisterTests() => _uart = new Serial16550(_sink);

    [Fact]
    public void Registers_start_in_the_power_on_state()
    {
        Assert.Equal(0x00, _uart.ReadRegister(InterruptEnable));
        Assert.Equal(0x01, _uart.ReadRegister(InterruptId));
        Assert.Equal(0x00, _uart.ReadRegister(LineControl));
        Assert.Equal(0x00, _uart.ReadRegister(ModemControl));
        Assert.Equal(LsrThrEmpty | LsrTransmitterEmpty, _uart.ReadRegister(LineStatus));
        Assert.Equal(0xb0, _uart.ReadRegister(ModemStatus)); // DCD, DSR, CTS: a ready modem
        Assert.Equal(0x00, _uart.ReadRegister(Scratch));
    }

    [Theory]
    [InlineData(0x00)]
    [InlineData(0x5a)]
    [InlineData(0xa5)]
    [InlineData(0xff)]
    public void Scratch_register_keeps_what_was_written(byte value)
    {
        _uart.WriteRegister(Scratch, value);

        Assert.Equal(value, _uart.ReadRegister(Scratch));
    }

    [Theory]
    [InlineData(0x03)] // 8N1
    [InlineData(0x1f)]
    [InlineData(0x83)] // DLAB set
    [InlineData(0xbf)] // the value Linux uses to probe for an EFR
    public void Line_control_register_round_trips(byte value)
    {
        _uart.WriteRegister(LineControl, value);

        Assert.Equal(value, _uart.ReadRegister(LineControl));
    }

    [Fact]
    public void Divisor_latch_defaults_to_9600_baud()
    {
        _uart.WriteRegister(LineControl, DivisorLatchAccess);

        Assert.Equal(12, _uart.ReadRegister(Data));
        Assert.Equal(0, _uart.ReadRegister(InterruptEnable));
    }

    [Fact]
    public void With_DLAB_set_offsets_0_and_1_are_the_divisor_latch()
    {
        _uart.WriteRegister(InterruptEnable, 0x05);
        _uart.EnqueueInput((byte)'r');

        _uart.WriteRegister(LineControl, DivisorLatchAccess | 0x03);
        _uart.WriteRegister(Data, 0x01);            // DLL, not THR
        _uart.WriteRegister(InterruptEnable, 0x99); // DLM, not IER

        Assert.Equal(0x01, _uart.ReadRegister(Data));
        Assert.Equal(0x99, _uart.ReadRegister(InterruptEnable));
        Assert.Equal(0, _sink.Length);

        _uart.WriteRegister(LineControl, 0x03);

        Assert.Equal(0x05, _uart.ReadRegister(InterruptEnable));
        Assert.Equal((byte)'r', _uart.ReadRegister(Data)); // the divisor reads did not consume input
    }

    [Fact]
    public void Interrupt_enable_keeps_only_the_four_defined_bits()
    {
        _uart.WriteRegister(InterruptEnable, 0xff);

        Assert.Equal(0x0f, _uart.ReadRegister(InterruptEnable));
    }

    [Fact]
    public void Modem_control_keeps_only_the_five_defined_bits()
    {
        _uart.WriteRegister(ModemControl, 0xff);

        Assert.Equal(0x1f, _uart.ReadRegister(ModemControl));
    }

    [Fact]
    public void Line_and_modem_status_ignore_writes()
    {
        _uart.WriteRegister(LineStatus, 0x00);
        _uart.WriteRegister(ModemStatus, 0x00);

        Assert.Equal(LsrThrEmpty | LsrTransmitterEmpty, _uart.ReadRegister(LineStatus));
        Assert.Equal(0xb0, _uart.ReadRegister(ModemStatus));
    }

    [Fact]
    public void Transmitted_bytes_reach_the_sink_and_the_transmitter_is_empty_before_and_after()
    {
        Assert.Equal(LsrThrEmpty | LsrTransmitterEmpty, _uart.ReadRegister(LineStatus));

        foreach (byte b in "hi\n"u8)
        {
            _uart.WriteRegister(Data, b);
            Assert.Equal(LsrThrEmpty | LsrTransmitterEmpty, _uart.ReadRegister(LineStatus));
        }

        Assert.Equal("hi\n", _sink.Text);
    }

    [Fact]
    public void Input_sets_data_ready_until_the_fifo_is_drained_in_order()
    {
        Assert.Equal(3, _uart.EnqueueInput("abc"u8));

        Assert.Equal(LsrDataReady | LsrThrEmpty | LsrTransmitterEmpty, _uart.ReadRegister(LineStatus));
        Assert.Equal((byte)'a', _uart.ReadRegister(Data));
        Assert.Equal((byte)'b', _uart.ReadRegister(Data));
        Assert.Equal(LsrDataReady, _uart.ReadRegister(LineStatus) & LsrDataReady);
        Assert.Equal((byte)'c', _uart.ReadRegister(Data));
        Assert.Equal(0, _uart.ReadRegister(LineStatus) & LsrDataReady);
    }

    [Fact]
    public void Reading_an_empty_receiver_returns_zero_and_keeps_data_ready_clear()
    {
        Assert.Equal(0, _uart.ReadRegister(Data));
        Assert.Equal(0, _uart.ReadRegister(LineStatus) & LsrDataReady);
    }

    [Fact]
    public void Fifo_overrun_sets_OE_keeps_the_first_16_bytes_and_OE_clears_on_LSR_read()
    {
        for (int i = 0; i < Serial16550.ReceiveFifoCapacity; i++)
        {
            Assert.True(_uart.EnqueueInput((byte)i));
        }

        Assert.Equal(0, _uart.ReadRegister(LineStatus) & LsrOverrun);
        Assert.Equal(0, _uart.ReceiveFifoFreeSpace);

        Assert.False(_uart.EnqueueInput(0xee));

        Assert.Equal(LsrOverrun | LsrDataReady, _uart.ReadRegister(LineStatus) & (LsrOverrun | LsrDataReady));
        Assert.Equal(0, _uart.ReadRegister(LineStatus) & LsrOverrun);
        for (int i = 0; i < Serial16550.ReceiveFifoCapacity; i++)
        {
            Assert.Equal((byte)i, _uart.ReadRegister(Data));
        }

        Assert.Equal(0, _uart.ReadRegister(LineStatus) & LsrDataReady);
    }

    [Fact]
    public void Span_input_stores_what_fits_and_reports_how_much()
    {
        byte[] input = new byte[Serial16550.ReceiveFifoCapacity + 4];

        Assert.Equal(Serial16550.ReceiveFifoCapacity, _uart.EnqueueInput(input));
        Assert.Equal(LsrOverrun, _uart.ReadRegister(LineStatus) & LsrOverrun);
    }

    [Fact]
    public void Enabling_fifos_sets_IIR_bits_7_and_6_and_disabling_clears_them()
    {
        _uart.WriteRegister(InterruptId, 0x01);
        Assert.Equal(0xc1, _uart.ReadRegister(InterruptId));

        _uart.WriteRegister(InterruptId, 0x00);
        Assert.Equal(0x01, _uart.ReadRegister(InterruptId));
    }

    [Fact]
    public void FCR_bit_1_clears_the_receive_fifo_and_keeps_fifos_enabled()
    {
        _uart.WriteRegister(InterruptId, 0x01);
        _uart.EnqueueInput("xyz"u8);

        _uart.WriteRegister(InterruptId, 0x03);

        Assert.Equal(0, _uart.ReadRegister(LineStatus) & LsrDataReady);
        Assert.Equal(0xc1, _uart.ReadRegister(InterruptId));
        Assert.Equal(Serial16550.ReceiveFifoCapacity, _uart.ReceiveFifoFreeSpace);
    }

    [Fact]
    public void FCR_bit_2_clears_only_the_transmit_side()
    {
        _uart.WriteRegister(InterruptId, 0x01);
        _uart.EnqueueInput((byte)'k');

        _uart.WriteRegister(InterruptId, 0x05);

        Assert.Equal(LsrDataReady | LsrThrEmpty | LsrTransmitterEmpty, _uart.ReadRegister(LineStatus));
        Assert.Equal((byte)'k', _uart.ReadRegister(Data));
    }

    [Fact]
    public void Switching_fifo_mode_empties_the_receive_fifo()
    {
        _uart.EnqueueInput((byte)'a');
        _uart.WriteRegister(InterruptId, 0x01);
        Assert.Equal(0, _uart.ReadRegister(LineStatus) & LsrDataReady);

        _uart.EnqueueInput((byte)'b');
        _uart.WriteRegister(InterruptId, 0x00);
        Assert.Equal(0, _uart.ReadRegister(LineStatus) & LsrDataReady);
    }

    [Fact]
    public void Wider_accesses_use_only_the_first_byte()
    {
        _uart.Write(Scratch, [0x5a, 0xa5, 0xff, 0xff]);

        Span<byte> data = [0xee, 0xee, 0xee, 0xee];
        _uart.Read(Scratch, data);

        Assert.Equal([0x5a, 0x00, 0x00, 0x00], data.ToArray());
    }

    [Fact]
    public void Offsets_beyond_the_register_block_read_zero_and_ignore_writes()
    {
        _uart.WriteRegister(Serial16550.RegisterBlockLength, 0x41);

        Assert.Equal(0, _uart.ReadRegister(Serial16550.RegisterBlockLength));
        Assert.Equal(0, _sink.Length);
    }
}
