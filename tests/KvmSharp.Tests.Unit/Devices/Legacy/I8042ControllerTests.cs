using KvmSharp.Devices.Legacy;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Legacy;

public sealed class I8042ControllerTests
{
    // Offsets inside the 0x60..0x64 window.
    private const ulong Data = 0;     // 0x60
    private const ulong PortB = 1;    // 0x61
    private const ulong Status = 4;   // 0x64 read
    private const ulong Command = 4;  // 0x64 write

    private const byte Obf = 0x01;
    private const byte Ibf = 0x02;
    private const byte SystemFlag = 0x04;
    private const byte LastWriteWasCommand = 0x08;
    private const byte NotInhibited = 0x10;
    private const byte AuxData = 0x20;

    private const byte CtrKbdInt = 0x01;
    private const byte CtrKbdDis = 0x10;
    private const byte CtrAuxDis = 0x20;
    private const byte CtrXlate = 0x40;

    private readonly EdgeLatchingInterruptLine _irq = new();
    private readonly I8042Controller _kbc;
    private int _resets;

    public I8042ControllerTests() => _kbc = new I8042Controller(() => _resets++, _irq);

    [Fact]
    public void Power_on_status_is_idle_with_system_flag_and_keyboard_not_inhibited()
    {
        Assert.Equal(SystemFlag | NotInhibited, _kbc.ReadByteAt(Status));
        Assert.Empty(_irq.Levels);
        Assert.Equal(0x65, I8042Controller.DefaultCommandByte);
        Assert.Equal(I8042Controller.DefaultCommandByte, _kbc.CommandByte);
        Assert.Equal(I8042Controller.DefaultCommandByte, ReadCommandByte());
    }

    [Fact]
    public void Status_records_whether_the_last_write_went_to_the_command_or_the_data_port()
    {
        _kbc.WriteByteAt(Command, 0xae);
        Assert.Equal(LastWriteWasCommand, _kbc.ReadByteAt(Status) & LastWriteWasCommand);

        _kbc.WriteByteAt(Data, 0xee); // echo, to the keyboard
        Assert.Equal(0, _kbc.ReadByteAt(Status) & LastWriteWasCommand);
    }

    [Fact]
    public void Command_byte_round_trips_except_that_the_absent_aux_port_stays_disabled()
    {
        WriteCommandByte(0x44);
        Assert.Equal(0x44 | CtrAuxDis, ReadCommandByte());

        WriteCommandByte(0x31);
        Assert.Equal(0x31 | CtrAuxDis, ReadCommandByte());
        Assert.Equal(0x31 | CtrAuxDis, _kbc.CommandByte);
    }

    [Fact]
    public void Clearing_the_command_byte_system_flag_clears_it_in_status_and_self_test_sets_it_again()
    {
        WriteCommandByte(CtrXlate);
        Assert.Equal(0, _kbc.ReadByteAt(Status) & SystemFlag);

        _kbc.WriteByteAt(Command, 0xaa);

        Assert.Equal(0x55, _kbc.ReadByteAt(Data));
        Assert.Equal(SystemFlag, _kbc.ReadByteAt(Status) & SystemFlag);
    }

    [Theory]
    [InlineData(0xaa, 0x55)] // controller self-test passed
    [InlineData(0xab, 0x00)] // keyboard interface test: no error
    [InlineData(0xa9, 0x01)] // aux interface test: the aux port is absent
    [InlineData(0xa4, 0xf1)] // no password installed
    [InlineData(0xc0, 0x80)] // input port: keyboard not inhibited
    [InlineData(0xe0, 0x00)] // test inputs
    public void Controller_commands_answer_one_byte_through_the_data_port(byte command, byte reply)
    {
        _kbc.WriteByteAt(Command, command);

        Assert.Equal(Obf, _kbc.ReadByteAt(Status) & (Obf | Ibf | AuxData));
        Assert.Equal(reply, _kbc.ReadByteAt(Data));
        Assert.Equal(0, _kbc.ReadByteAt(Status) & Obf);
    }

    [Fact]
    public void Disable_and_enable_keyboard_toggle_command_byte_bit_4()
    {
        _kbc.WriteByteAt(Command, 0xad);
        Assert.Equal(CtrKbdDis, ReadCommandByte() & CtrKbdDis);

        _kbc.WriteByteAt(Command, 0xae);
        Assert.Equal(0, ReadCommandByte() & CtrKbdDis);
    }

    [Fact]
    public void Disable_aux_sets_bit_5_and_enable_aux_cannot_clear_it()
    {
        WriteCommandByte(0x00);
        _kbc.WriteByteAt(Command, 0xa7);
        Assert.Equal(CtrAuxDis, ReadCommandByte() & CtrAuxDis);

        _kbc.WriteByteAt(Command, 0xa8);
        Assert.Equal(CtrAuxDis, ReadCommandByte() & CtrAuxDis);
    }

    [Fact]
    public void Aux_loopback_returns_the_byte_flagged_as_aux_data_without_raising_the_keyboard_irq()
    {
        _kbc.WriteByteAt(Command, 0xd3);
        _kbc.WriteByteAt(Data, 0x5a);

        Assert.Equal(Obf | AuxData, _kbc.ReadByteAt(Status) & (Obf | AuxData));
        Assert.Empty(_irq.Levels);
        Assert.Equal(0x5a, _kbc.ReadByteAt(Data));
        Assert.Equal(0, _kbc.ReadByteAt(Status) & (Obf | AuxData));
    }

    [Fact]
    public void Writing_the_keyboard_output_buffer_delivers_the_byte_as_keyboard_data_with_an_interrupt()
    {
        _kbc.WriteByteAt(Command, 0xd2);
        _kbc.WriteByteAt(Data, 0x1c);

        Assert.True(_irq.IsAsserted);
        Assert.Equal(Obf, _kbc.ReadByteAt(Status) & (Obf | AuxData));
        Assert.Equal(0x1c, _kbc.ReadByteAt(Data));
        Assert.False(_irq.IsAsserted);
    }

    [Fact]
    public void A_new_command_abandons_one_still_waiting_for_its_data_byte()
    {
        _kbc.WriteByteAt(Command, 0x60); // write command byte: waits for data...
        _kbc.WriteByteAt(Command, 0x20); // ...but a read command comes instead

        Assert.Equal(I8042Controller.DefaultCommandByte, _kbc.ReadByteAt(Data));
        _kbc.WriteByteAt(Data, 0xee); // now goes to the keyboard, which echoes
        Assert.Equal(0xee, _kbc.ReadByteAt(Data));
        Assert.Equal(I8042Controller.DefaultCommandByte, ReadCommandByte());
    }

    [Fact]
    public void Controller_ram_bytes_beyond_the_command_byte_round_trip()
    {
        _kbc.WriteByteAt(Command, 0x7f);
        _kbc.WriteByteAt(Data, 0xc3);
        _kbc.WriteByteAt(Command, 0x61);
        _kbc.WriteByteAt(Data, 0x3c);

        _kbc.WriteByteAt(Command, 0x3f);
        Assert.Equal(0xc3, _kbc.ReadByteAt(Data));
        _kbc.WriteByteAt(Command, 0x21);
        Assert.Equal(0x3c, _kbc.ReadByteAt(Data));
    }

    [Fact]
    public void Pulse_command_FE_requests_a_reset()
    {
        _kbc.WriteByteAt(Command, 0xfe);

        Assert.Equal(1, _resets);
    }

    [Theory]
    [InlineData(0xf0, true)]
    [InlineData(0xf2, true)]
    [InlineData(0xfc, true)]
    [InlineData(0xfe, true)]
    [InlineData(0xf1, false)]
    [InlineData(0xfd, false)] // pulses A20 only
    [InlineData(0xff, false)] // pulses nothing; a20.c and others use it as a no-op
    public void Pulse_commands_reset_exactly_when_they_pulse_output_bit_0(byte command, bool resets)
    {
        _kbc.WriteByteAt(Command, command);

        Assert.Equal(resets ? 1 : 0, _resets);
    }

    [Fact]
    public void Writing_the_output_port_with_bit_0_clear_requests_a_reset()
    {
        // arch/x86/boot/a20.c enables A20 with 0xdf: reset line released.
        _kbc.WriteByteAt(Command, 0xd1);
        _kbc.WriteByteAt(Data, 0xdf);
        Assert.Equal(0, _resets);

        _kbc.WriteByteAt(Command, 0xd1);
        _kbc.WriteByteAt(Data, 0xde);
        Assert.Equal(1, _resets);
    }

    [Fact]
    public void Output_port_reads_back_with_the_buffer_full_bits_reflecting_the_output_buffer()
    {
        _kbc.WriteByteAt(Command, 0xd0);
        Assert.Equal(0xcf, _kbc.ReadByteAt(Data));

        _kbc.WriteByteAt(Command, 0xd1);
        _kbc.WriteByteAt(Data, 0x03);
        _kbc.WriteByteAt(Command, 0xd2); // leave a keyboard byte waiting
        _kbc.WriteByteAt(Data, 0x99);
        _kbc.WriteByteAt(Command, 0xd0);

        Assert.Equal(0x99, _kbc.ReadByteAt(Data));
        Assert.Equal(0x03 | 0x10, _kbc.ReadByteAt(Data));
    }

    [Theory]
    [InlineData(0xfe, null)]
    [InlineData(0xd1, (byte)0x00)]
    public void Reset_callback_runs_outside_the_device_lock(byte command, byte? data)
    {
        I8042Controller? controller = null;
        bool otherThreadGotIn = false;
        controller = new I8042Controller(() =>
        {
            var other = new Thread(() => controller!.SendCtrlAltDel());
            other.Start();
            otherThreadGotIn = other.Join(TimeSpan.FromSeconds(10));
        });

        controller.WriteByteAt(Command, command);
        if (data is byte value)
        {
            controller.WriteByteAt(Data, value);
        }

        Assert.True(otherThreadGotIn, "another thread could not use the controller while the reset callback ran");
    }

    [Fact]
    public void Ctrl_alt_del_is_queued_in_set_1_with_translation_and_each_read_makes_a_new_edge()
    {
        Assert.True(_kbc.SendCtrlAltDel());

        var read = new List<byte>();
        while ((_kbc.ReadByteAt(Status) & Obf) != 0)
        {
            read.Add(_kbc.ReadByteAt(Data));
        }

        Assert.Equal([0x1d, 0x38, 0xe0, 0x53, 0x9d, 0xb8, 0xe0, 0xd3], read);
        Assert.Equal(8, _irq.RisingEdges);
        Assert.False(_irq.IsAsserted);
    }

    [Fact]
    public void Ctrl_alt_del_without_translation_is_in_set_2()
    {
        WriteCommandByte(CtrKbdInt);

        Assert.True(_kbc.SendCtrlAltDel());

        Assert.Equal([0x14, 0x11, 0xe0, 0x71, 0xf0, 0x14, 0xf0, 0x11, 0xe0, 0xf0, 0x71], DrainData());
    }

    [Fact]
    public void Ctrl_alt_del_follows_the_scancode_set_the_guest_selected_when_untranslated()
    {
        WriteCommandByte(CtrKbdInt);
        _kbc.WriteByteAt(Data, 0xf0);
        _kbc.WriteByteAt(Data, 0x03);
        _kbc.WriteByteAt(Data, 0xf0);
        _kbc.WriteByteAt(Data, 0x00);
        Assert.Equal([0xfa, 0xfa, 0xfa, 0xfa, 0x03], DrainData());

        Assert.True(_kbc.SendCtrlAltDel());

        Assert.Equal([0x11, 0x19, 0x64, 0xf0, 0x11, 0xf0, 0x19, 0xf0, 0x64], DrainData());
    }

    [Fact]
    public void Ctrl_alt_del_with_the_keyboard_interrupt_disabled_is_polled_without_an_irq()
    {
        WriteCommandByte(CtrXlate);

        Assert.True(_kbc.SendCtrlAltDel());

        Assert.Equal(Obf, _kbc.ReadByteAt(Status) & Obf);
        Assert.Empty(_irq.Levels);
        Assert.Equal(8, DrainData().Length);
        Assert.Empty(_irq.Levels);
    }

    [Fact]
    public void Ctrl_alt_del_waits_in_the_keyboard_while_the_interface_is_disabled()
    {
        _kbc.WriteByteAt(Command, 0xad);

        Assert.True(_kbc.SendCtrlAltDel());
        Assert.Equal(0, _kbc.ReadByteAt(Status) & Obf);
        Assert.Empty(_irq.Levels);

        _kbc.WriteByteAt(Command, 0xae);

        Assert.True(_irq.IsAsserted);
        Assert.Equal([0x1d, 0x38, 0xe0, 0x53, 0x9d, 0xb8, 0xe0, 0xd3], DrainData());
    }

    [Fact]
    public void Enabling_the_keyboard_interrupt_with_data_waiting_raises_the_line()
    {
        WriteCommandByte(CtrXlate);
        Assert.True(_kbc.SendCtrlAltDel());
        Assert.False(_irq.IsAsserted);

        WriteCommandByte(CtrXlate | CtrKbdInt);

        Assert.True(_irq.IsAsserted);
    }

    [Fact]
    public void Ctrl_alt_del_is_all_or_nothing_when_the_keyboard_buffer_is_nearly_full()
    {
        Assert.True(_kbc.SendCtrlAltDel());
        Assert.True(_kbc.SendCtrlAltDel()); // 16 bytes: full

        Assert.False(_kbc.SendCtrlAltDel());
        Assert.Equal(16, DrainData().Length);
        Assert.True(_kbc.SendCtrlAltDel());
    }

    [Fact]
    public void Controller_replies_come_before_keyboard_bytes_already_waiting()
    {
        Assert.True(_kbc.SendCtrlAltDel());
        _kbc.WriteByteAt(Command, 0xaa);

        byte[] all = DrainData();

        Assert.Equal(0x55, all[0]);
        Assert.Equal(0x1d, all[1]);
    }

    [Fact]
    public void Keyboard_commands_get_their_replies()
    {
        _kbc.WriteByteAt(Data, 0xee); // echo
        Assert.Equal([0xee], DrainData());

        _kbc.WriteByteAt(Data, 0xff); // reset: ACK then BAT passed
        Assert.Equal([0xfa, 0xaa], DrainData());

        _kbc.WriteByteAt(Data, 0xfe); // resend the last byte
        Assert.Equal([0xaa], DrainData());

        _kbc.WriteByteAt(Data, 0xf0); // scancode set: query, translated
        _kbc.WriteByteAt(Data, 0x00);
        Assert.Equal([0xfa, 0xfa, 0x41], DrainData());

        _kbc.WriteByteAt(Data, 0xf0); // an invalid set is refused
        _kbc.WriteByteAt(Data, 0x07);
        Assert.Equal([0xfa, 0xfe], DrainData());

        _kbc.WriteByteAt(Data, 0x12); // not a command
        Assert.Equal([0xfe], DrainData());

        _kbc.WriteByteAt(Data, 0xf8); // set 3 key type commands are acknowledged
        Assert.Equal([0xfa], DrainData());
    }

    [Fact]
    public void Keyboard_reset_drops_scancodes_still_in_the_keyboard_and_restores_scanning()
    {
        _kbc.WriteByteAt(Data, 0xf5); // disable scanning
        Assert.Equal([0xfa], DrainData());
        Assert.False(_kbc.SendCtrlAltDel());

        _kbc.WriteByteAt(Command, 0xad);
        _kbc.WriteByteAt(Data, 0xf4);
        Assert.True(_kbc.SendCtrlAltDel());
        _kbc.WriteByteAt(Data, 0xff); // reset while ACK + scancodes wait behind the disabled interface
        _kbc.WriteByteAt(Command, 0xae);

        Assert.Equal([0xfa, 0xaa], DrainData());
        Assert.True(_kbc.SendCtrlAltDel());
    }

    [Fact]
    public void Reading_an_empty_data_port_returns_the_last_byte_again()
    {
        _kbc.WriteByteAt(Command, 0xaa);
        Assert.Equal(0x55, _kbc.ReadByteAt(Data));

        Assert.Equal(0x55, _kbc.ReadByteAt(Data));
        Assert.Equal(0, _kbc.ReadByteAt(Status) & Obf);
    }

    [Fact]
    public void Port_61_flips_its_refresh_and_timer_2_bits_on_every_read_and_keeps_the_written_low_nibble()
    {
        byte first = _kbc.ReadByteAt(PortB);
        byte second = _kbc.ReadByteAt(PortB);
        byte third = _kbc.ReadByteAt(PortB);

        Assert.Equal(0x30, first ^ second);
        Assert.Equal(first, third);
        Assert.Equal(0, (first | second) & 0xcf); // no NMI reasons, nothing written yet

        _kbc.WriteByteAt(PortB, 0xff);
        Assert.Equal(0x0f, _kbc.ReadByteAt(PortB) & 0xcf);
        _kbc.WriteByteAt(PortB, 0x01);
        Assert.Equal(0x01, _kbc.ReadByteAt(PortB) & 0xcf);
    }

    [Fact]
    public void Ports_62_and_63_read_as_absent_and_ignore_writes()
    {
        _kbc.WriteByteAt(2, 0x00);
        _kbc.WriteByteAt(3, 0x00);

        Assert.Equal(0xff, _kbc.ReadByteAt(2));
        Assert.Equal(0xff, _kbc.ReadByteAt(3));
        Assert.Equal(SystemFlag | NotInhibited, _kbc.ReadByteAt(Status));
        Assert.Equal(0, _resets);
    }

    [Fact]
    public void Wider_reads_return_the_register_in_the_first_byte_and_zeros_after_it()
    {
        Span<byte> data = [0xaa, 0xaa];
        _kbc.Read(Status, data);

        Assert.Equal([SystemFlag | NotInhibited, 0x00], data.ToArray());
    }

    [Fact]
    public void Works_without_an_interrupt_line()
    {
        var controller = new I8042Controller(static () => { });

        Assert.True(controller.SendCtrlAltDel());
        Assert.Equal(0x1d, controller.ReadByteAt(Data));
    }

    private byte ReadCommandByte()
    {
        _kbc.WriteByteAt(Command, 0x20);
        return _kbc.ReadByteAt(Data);
    }

    private void WriteCommandByte(byte value)
    {
        _kbc.WriteByteAt(Command, 0x60);
        _kbc.WriteByteAt(Data, value);
    }

    private byte[] DrainData()
    {
        var bytes = new List<byte>();
        for (int i = 0; i < 64 && (_kbc.ReadByteAt(Status) & Obf) != 0; i++)
        {
            bytes.Add(_kbc.ReadByteAt(Data));
        }

        return [.. bytes];
    }
}
