using KvmSharp.Devices.Serial;
using Xunit;
using static KvmSharp.Tests.Unit.Devices.UartRegister;

namespace KvmSharp.Tests.Unit.Devices;

public sealed class Serial16550InterruptTests
{
    private const byte IerReceivedData = 0x01;
    private const byte IerThrEmpty = 0x02;
    private const byte IerLineStatus = 0x04;
    private const byte IerModemStatus = 0x08;
    private const byte Out2 = 0x08;
    private const byte Loopback = 0x10;

    private const byte IirNone = 0x01;
    private const byte IirLineStatus = 0x06;
    private const byte IirReceivedData = 0x04;
    private const byte IirThrEmpty = 0x02;
    private const byte IirModemStatus = 0x00;

    private readonly CapturingSerialSink _sink = new();
    private readonly RecordingInterruptLine _line = new();
    private readonly Serial16550 _uart;

    public Serial16550InterruptTests() => _uart = new Serial16550(_sink, _line);

    [Fact]
    public void Nothing_is_reported_while_interrupts_are_disabled()
    {
        _uart.WriteRegister(ModemControl, Out2);
        _uart.EnqueueInput((byte)'a');

        Assert.Equal(IirNone, _uart.ReadRegister(InterruptId));
        Assert.Empty(_line.Levels);
    }

    [Fact]
    public void Received_data_interrupt_lasts_until_the_fifo_is_empty()
    {
        _uart.WriteRegister(InterruptEnable, IerReceivedData);
        _uart.EnqueueInput("ab"u8);

        Assert.Equal(IirReceivedData, _uart.ReadRegister(InterruptId));
        Assert.Equal(IirReceivedData, _uart.ReadRegister(InterruptId)); // reading IIR does not clear it
        _uart.ReadRegister(Data);
        Assert.Equal(IirReceivedData, _uart.ReadRegister(InterruptId));
        _uart.ReadRegister(Data);
        Assert.Equal(IirNone, _uart.ReadRegister(InterruptId));
    }

    [Fact]
    public void Enabling_the_THR_empty_interrupt_raises_it_and_reading_IIR_clears_it()
    {
        _uart.WriteRegister(InterruptEnable, IerThrEmpty);

        Assert.Equal(IirThrEmpty, _uart.ReadRegister(InterruptId));
        Assert.Equal(IirNone, _uart.ReadRegister(InterruptId));
    }

    [Fact]
    public void Writing_THR_clears_the_THR_empty_interrupt_and_the_emptied_THR_raises_it_again()
    {
        _uart.WriteRegister(ModemControl, Out2);
        _uart.WriteRegister(InterruptEnable, IerThrEmpty);
        Assert.True(_line.IsAsserted);
        _line.Clear();

        _uart.WriteRegister(Data, (byte)'z');

        // The write drops the line; the byte leaves at once, THR is empty again, and the line rises: a fresh edge.
        Assert.Equal([false, true], _line.Levels);
        Assert.Equal(IirThrEmpty, _uart.ReadRegister(InterruptId));
        Assert.Equal("z", _sink.Text);
    }

    [Fact]
    public void Disabling_the_THR_empty_interrupt_withdraws_it()
    {
        _uart.WriteRegister(InterruptEnable, IerThrEmpty);
        _uart.WriteRegister(InterruptEnable, 0);
        _uart.WriteRegister(InterruptEnable, IerReceivedData);

        Assert.Equal(IirNone, _uart.ReadRegister(InterruptId));
    }

    [Fact]
    public void Reading_IIR_does_not_clear_THR_empty_while_a_higher_priority_source_is_reported()
    {
        _uart.WriteRegister(InterruptEnable, IerReceivedData | IerThrEmpty);
        _uart.EnqueueInput((byte)'a');

        Assert.Equal(IirReceivedData, _uart.ReadRegister(InterruptId));
        _uart.ReadRegister(Data);

        Assert.Equal(IirThrEmpty, _uart.ReadRegister(InterruptId));
        Assert.Equal(IirNone, _uart.ReadRegister(InterruptId));
    }

    [Fact]
    public void Sources_are_reported_by_priority_and_each_clears_by_its_own_rule()
    {
        _uart.WriteRegister(InterruptEnable, IerReceivedData | IerThrEmpty | IerLineStatus | IerModemStatus);

        // Loopback makes all four sources at once: entering it changes the modem lines (modem status),
        // and 17 looped-back bytes fill the receive FIFO (data available) and overrun it (line status).
        _uart.WriteRegister(ModemControl, Loopback);
        for (int i = 0; i <= Serial16550.ReceiveFifoCapacity; i++)
        {
            _uart.WriteRegister(Data, (byte)i);
        }

        Assert.Equal(IirLineStatus, _uart.ReadRegister(InterruptId));
        _uart.ReadRegister(LineStatus);

        Assert.Equal(IirReceivedData, _uart.ReadRegister(InterruptId));
        for (int i = 0; i < Serial16550.ReceiveFifoCapacity; i++)
        {
            _uart.ReadRegister(Data);
        }

        Assert.Equal(IirThrEmpty, _uart.ReadRegister(InterruptId));
        Assert.Equal(IirModemStatus, _uart.ReadRegister(InterruptId));
        _uart.ReadRegister(ModemStatus);

        Assert.Equal(IirNone, _uart.ReadRegister(InterruptId));
    }

    [Fact]
    public void Overrun_is_not_reported_as_line_status_unless_enabled()
    {
        _uart.WriteRegister(InterruptEnable, IerReceivedData);
        for (int i = 0; i <= Serial16550.ReceiveFifoCapacity; i++)
        {
            _uart.EnqueueInput((byte)i);
        }

        Assert.Equal(IirReceivedData, _uart.ReadRegister(InterruptId));
    }

    [Fact]
    public void Modem_status_interrupt_clears_when_MSR_is_read()
    {
        _uart.WriteRegister(InterruptEnable, IerModemStatus);
        _uart.WriteRegister(ModemControl, Loopback);

        Assert.Equal(IirModemStatus, _uart.ReadRegister(InterruptId));
        _uart.ReadRegister(ModemStatus);
        Assert.Equal(IirNone, _uart.ReadRegister(InterruptId));
    }

    [Fact]
    public void IIR_reports_fifo_mode_together_with_the_source()
    {
        _uart.WriteRegister(InterruptId, 0x01);
        _uart.WriteRegister(InterruptEnable, IerReceivedData);
        _uart.EnqueueInput((byte)'a');

        Assert.Equal(0xc0 | IirReceivedData, _uart.ReadRegister(InterruptId));
    }

    [Fact]
    public void Line_follows_the_pending_state_only_while_OUT2_is_set()
    {
        _uart.WriteRegister(InterruptEnable, IerReceivedData);
        _uart.EnqueueInput((byte)'a');
        Assert.Empty(_line.Levels); // pending, but OUT2 gates it off

        _uart.WriteRegister(ModemControl, Out2);
        Assert.Equal([true], _line.Levels);

        _uart.WriteRegister(ModemControl, 0);
        Assert.Equal([true, false], _line.Levels);

        _uart.WriteRegister(ModemControl, Out2);
        _uart.ReadRegister(Data);
        Assert.Equal([true, false, true, false], _line.Levels);
    }

    [Fact]
    public void Line_is_driven_only_when_its_level_changes()
    {
        _uart.WriteRegister(ModemControl, Out2);
        _uart.WriteRegister(InterruptEnable, IerReceivedData);

        _uart.EnqueueInput((byte)'a');
        _uart.EnqueueInput((byte)'b');
        _uart.ReadRegister(LineStatus);
        _uart.ReadRegister(Data);

        Assert.Equal([true], _line.Levels);
    }

    [Fact]
    public void Loopback_keeps_the_line_low_because_the_OUT2_pin_is_forced_inactive()
    {
        _uart.WriteRegister(InterruptEnable, IerReceivedData);
        _uart.WriteRegister(ModemControl, Loopback | Out2);
        _uart.WriteRegister(Data, (byte)'l');

        Assert.Equal(IirReceivedData, _uart.ReadRegister(InterruptId)); // the source is still reported
        Assert.False(_line.IsAsserted);

        _uart.WriteRegister(ModemControl, Out2);
        Assert.True(_line.IsAsserted);
    }

    [Fact]
    public void Host_input_raises_the_line_and_draining_lowers_it()
    {
        _uart.WriteRegister(ModemControl, Out2);
        _uart.WriteRegister(InterruptEnable, IerReceivedData);

        _uart.EnqueueInput((byte)'i');
        Assert.True(_line.IsAsserted);

        _uart.ReadRegister(Data);
        Assert.False(_line.IsAsserted);
    }

    [Fact]
    public void Works_without_an_interrupt_line()
    {
        var uart = new Serial16550(_sink);
        uart.WriteRegister(ModemControl, Out2);
        uart.WriteRegister(InterruptEnable, IerThrEmpty | IerReceivedData);
        uart.EnqueueInput((byte)'p');

        Assert.Equal(IirReceivedData, uart.ReadRegister(InterruptId));
    }
}
