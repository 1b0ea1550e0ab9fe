using KvmSharp.Devices.Bus;
using KvmSharp.Devices.Legacy;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Legacy;

/// <summary>The controller driven through the port bus exactly as Linux 6.1's i8042 and atkbd drivers do at boot.</summary>
public sealed class I8042LinuxBootTests
{
    private readonly EdgeLatchingInterruptLine _irq = new();
    private readonly DeviceBus _pio = new("pio");
    private readonly I8042Controller _controller;
    private readonly LinuxI8042Driver _driver;
    private int _resets;

    public I8042LinuxBootTests()
    {
        _controller = new I8042Controller(() => _resets++, _irq);
        _pio.Register(I8042Controller.BasePort, I8042Controller.RegisterBlockLength, _controller, "i8042");
        _driver = new LinuxI8042Driver(_pio, _irq);
    }

    [Theory]
    [InlineData(false)] // x86 default: the controller self-test only runs on suspend/shutdown
    [InlineData(true)]  // i8042.reset=1: self-test first
    public void Probe_finds_the_keyboard_port_at_once_without_messages_and_judges_aux_absent(bool resetOption)
    {
        bool registered = _driver.Probe(resetOption, out bool auxPresent);

        Assert.True(registered);
        Assert.False(auxPresent);
        Assert.Empty(_driver.Messages);
        Assert.Equal(0, _driver.Timeouts);
        Assert.Equal(0, _driver.ExtraPolls);
        Assert.Equal(I8042Controller.DefaultCommandByte, _driver.InitialCtr);
        Assert.False(_driver.Direct);

        // The keyboard port is enabled with its interrupt and translation on; aux stays disabled.
        Assert.Equal(
            LinuxI8042Driver.CtrXlate | LinuxI8042Driver.CtrAuxDis | 0x04 | LinuxI8042Driver.CtrKbdInt,
            _controller.CommandByte);
        Assert.Equal(0, _pio.UnhandledReads + _pio.UnhandledWrites);
        Assert.Equal(0, _resets);
    }

    [Fact]
    public void Keyboard_driver_probe_gets_an_ack_and_the_translated_id_each_by_its_own_interrupt()
    {
        Assert.True(_driver.Probe(resetOption: false, out _));
        _irq.ClearHistory();

        // atkbd_probe: GETID; atkbd_deactivate; atkbd_reset_state: SETLEDS 0, SETREP 0; atkbd_activate.
        Assert.Equal([0xab, 0x41], _driver.Ps2Command(0xf2, [], 2));
        Assert.Equal([], _driver.Ps2Command(0xf5, [], 0));
        Assert.Equal([], _driver.Ps2Command(0xed, [0x00], 0));
        Assert.Equal([], _driver.Ps2Command(0xf3, [0x00], 0));
        Assert.Equal([], _driver.Ps2Command(0xf4, [], 0));

        // ACK, AB, 41, ACK, ACK ACK, ACK ACK, ACK: nine bytes, nine edges, none spurious, none left behind.
        Assert.Equal([0xfa, 0xab, 0x41, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa], _driver.KeyboardBytes);
        Assert.Equal(9, _irq.RisingEdges);
        Assert.Equal(0, _driver.SpuriousInterrupts);
        Assert.False(_irq.IsAsserted);
        Assert.Equal(0, _driver.ReadStatus() & LinuxI8042Driver.StrObf);
        Assert.Empty(_driver.AuxBytes);
    }

    [Fact]
    public void Ctrl_alt_del_after_boot_reaches_the_keyboard_driver_as_set_1_one_interrupt_per_byte()
    {
        BootKeyboard();
        _irq.ClearHistory();

        Assert.True(_controller.SendCtrlAltDel());
        _driver.ServiceInterrupts();

        Assert.Equal([0x1d, 0x38, 0xe0, 0x53, 0x9d, 0xb8, 0xe0, 0xd3], _driver.KeyboardBytes);
        Assert.Equal(
            [true, false, true, false, true, false, true, false, true, false, true, false, true, false, true, false],
            _irq.Levels);
        Assert.Equal(0, _driver.SpuriousInterrupts);
    }

    [Fact]
    public void With_i8042_direct_the_keyboard_reports_the_untranslated_id_and_ctrl_alt_del_in_set_2()
    {
        _driver.Direct = true;
        Assert.True(_driver.Probe(resetOption: false, out _));
        Assert.Equal(0, _controller.CommandByte & LinuxI8042Driver.CtrXlate);

        Assert.Equal([0xab, 0x83], _driver.Ps2Command(0xf2, [], 2));
        Assert.Equal([], _driver.Ps2Command(0xf4, [], 0));
        _driver.KeyboardBytes.Clear();

        Assert.True(_controller.SendCtrlAltDel());
        _driver.ServiceInterrupts();

        Assert.Equal([0x14, 0x11, 0xe0, 0x71, 0xf0, 0x14, 0xf0, 0x11, 0xe0, 0xf0, 0x71], _driver.KeyboardBytes);
    }

    [Fact]
    public void Ctrl_alt_del_is_refused_while_the_keyboard_driver_has_scanning_disabled()
    {
        Assert.True(_driver.Probe(resetOption: false, out _));
        Assert.Equal([], _driver.Ps2Command(0xf5, [], 0)); // atkbd_deactivate

        Assert.False(_controller.SendCtrlAltDel());
        Assert.False(_irq.RequestPending);
        Assert.Equal(0, _driver.ReadStatus() & LinuxI8042Driver.StrObf);

        Assert.Equal([], _driver.Ps2Command(0xf4, [], 0)); // atkbd_activate
        Assert.True(_controller.SendCtrlAltDel());
    }

    [Fact]
    public void Shutdown_restores_the_initial_command_byte_and_reboot_k_pulses_reset_on_every_attempt()
    {
        BootKeyboard();

        // i8042_shutdown -> i8042_controller_reset, with the self-test (i8042.reset or suspend).
        _driver.ControllerReset(selftest: true);
        Assert.Equal(_driver.InitialCtr, _controller.CommandByte);
        Assert.Empty(_driver.Messages);

        // reboot=k (arch/x86/kernel/reboot.c): ten times kb_wait() then outb(0xfe, 0x64); the VM here never stops.
        for (int i = 0; i < 10; i++)
        {
            for (int wait = 0; wait < 0x10000 && (_driver.ReadStatus() & LinuxI8042Driver.StrIbf) != 0; wait++)
            {
            }

            Assert.Equal(0, _driver.ReadStatus() & LinuxI8042Driver.StrIbf);
            _driver.WriteCommand(0xfe);
        }

        Assert.Equal(10, _resets);
    }

    [Fact]
    public void A_probe_against_a_full_buffer_still_finds_the_controller()
    {
        // Host keystrokes queued before the driver loads are flushed by i8042_controller_check, not mistaken for
        // a floating bus (which reads OBF forever and makes Linux report "No controller found").
        Assert.True(_controller.SendCtrlAltDel());
        Assert.True(_controller.SendCtrlAltDel());

        Assert.True(_driver.Probe(resetOption: false, out _));
        Assert.Empty(_driver.Messages);
    }

    private void BootKeyboard()
    {
        Assert.True(_driver.Probe(resetOption: false, out _));
        Assert.Equal([0xab, 0x41], _driver.Ps2Command(0xf2, [], 2));
        Assert.Equal([], _driver.Ps2Command(0xf5, [], 0));
        Assert.Equal([], _driver.Ps2Command(0xed, [0x00], 0));
        Assert.Equal([], _driver.Ps2Command(0xf3, [0x00], 0));
        Assert.Equal([], _driver.Ps2Command(0xf4, [], 0));
        _driver.KeyboardBytes.Clear();
    }
}
