using KvmSharp.Devices.Bus;
using KvmSharp.Devices.Debug;
using KvmSharp.Devices.Legacy;
using KvmSharp.Devices.Serial;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Legacy;

public sealed class QuietPortsTests
{
    private readonly DeviceBus _pio = new("pio");
    private readonly QuietPorts _quiet;
    private int _resets;

    public QuietPortsTests()
    {
        _quiet = new QuietPorts(() => _resets++);
        foreach (QuietPortWindow window in _quiet.Windows)
        {
            _pio.Register(window.BasePort, window.Length, window, window.Name);
        }
    }

    public static TheoryData<ushort> AbsentPorts =>
    [
        0x80, 0xed, 0x170, 0x177, 0x1f0, 0x1f7, 0x2e8, 0x2ef, 0x2f8, 0x2ff, 0x376, 0x378, 0x37a, 0x3c0, 0x3d4,
        0x3df, 0x3e8, 0x3ef, 0x3f6, 0xcf8, 0xcfc, 0xcff,
    ];

    [Theory]
    [MemberData(nameof(AbsentPorts))]
    public void Listed_ports_read_0xff_and_are_not_stray_accesses(ushort port)
    {
        _pio.Outb(port, 0x00);

        Assert.Equal(0xff, _pio.Inb(port));
        Assert.Equal(0, _pio.UnhandledReads);
        Assert.Equal(0, _pio.UnhandledWrites);
    }

    [Fact]
    public void Each_port_counts_its_own_reads_and_writes()
    {
        for (int i = 0; i < 5; i++)
        {
            _pio.Outb(0x80, (byte)i); // Linux's io_delay
        }

        _pio.Inb(0x2f8);
        _pio.Inb(0x2fd);
        _pio.Outb(0x2fd, 0x00);

        Assert.Equal(5, _quiet.AccessCount(0x80));
        Assert.Equal(1, _quiet.AccessCount(0x2f8));
        Assert.Equal(2, _quiet.AccessCount(0x2fd));
        Assert.Equal(0, _quiet.AccessCount(0x2f9));
        Assert.Equal(0, _quiet.AccessCount(0x3f8)); // not served here
        Assert.Equal(8, _quiet.TotalAccesses);
    }

    [Fact]
    public void Wider_accesses_read_0xff_in_every_byte_and_count_once_at_their_first_port()
    {
        // Linux's PCI type 1 probe: outl(0x80000000, 0xcf8); inl(0xcf8) reads back all ones: no host bridge.
        _pio.Write(0xcf8, [0x00, 0x00, 0x00, 0x80]);
        Span<byte> data = stackalloc byte[4];
        _pio.Read(0xcf8, data);

        Assert.Equal([0xff, 0xff, 0xff, 0xff], data.ToArray());
        Assert.Equal(2, _quiet.AccessCount(0xcf8));
        Assert.Equal(0, _quiet.AccessCount(0xcf9));
    }

    [Fact]
    public void Names_map_every_served_port_to_its_range()
    {
        Assert.Equal("post-code", _quiet.Names[0x80]);
        Assert.Equal("com2", _quiet.Names[0x2fa]);
        Assert.Equal("vga", _quiet.Names[0x3d5]);
        Assert.Equal("pci-config", _quiet.Names[0xcfc]);
        Assert.Equal("system-control-a", _quiet.Names[0x92]);
        Assert.False(_quiet.Names.ContainsKey(0x3f8));
        Assert.Equal(QuietPorts.DefaultRanges.Sum(r => r.Length), _quiet.Names.Count);
    }

    [Fact]
    public void Default_ranges_fit_beside_the_other_legacy_devices_and_the_in_kernel_ones()
    {
        // The other devices on the same bus: they would make Register throw on an overlap.
        _pio.Register(I8042Controller.BasePort, I8042Controller.RegisterBlockLength, new I8042Controller(static () => { }), "i8042");
        _pio.Register(CmosRtc.BasePort, CmosRtc.RegisterBlockLength, new CmosRtc(), "rtc");
        _pio.Register(0x3f8, Serial16550.RegisterBlockLength, new Serial16550(new CapturingSerialSink()), "com1");
        _pio.Register(0xf4, DebugExitPort.RegisterBlockLength, new DebugExitPort(static _ => { }), "debug-exit");

        // Ports KVM's in-kernel PIC, PIT, speaker port and ELCR answer never reach userspace; none may be listed.
        ushort[] inKernel = [0x20, 0x21, 0x40, 0x41, 0x42, 0x43, 0x61, 0xa0, 0xa1, 0x4d0, 0x4d1];
        foreach (ushort port in inKernel)
        {
            Assert.False(_quiet.Names.ContainsKey(port), $"port 0x{port:x} is handled in the kernel");
        }
    }

    [Fact]
    public void Port_92_starts_with_A20_on_and_keeps_what_is_written_except_the_reset_bit()
    {
        Assert.Equal(0x02, _pio.Inb(0x92));

        _pio.Outb(0x92, 0x00);
        Assert.Equal(0x00, _pio.Inb(0x92));
        _pio.Outb(0x92, 0x02);
        Assert.Equal(0x02, _pio.Inb(0x92));
        Assert.Equal(0, _resets);
    }

    [Fact]
    public void Port_92_bit_0_requests_a_reset()
    {
        // arch/x86/boot/a20.c's enable_a20_fast reads, sets A20, clears bit 0, writes: no reset.
        byte portA = _pio.Inb(0x92);
        _pio.Outb(0x92, (byte)((portA | 0x02) & ~0x01));
        Assert.Equal(0, _resets);

        _pio.Outb(0x92, 0x03);

        Assert.Equal(1, _resets);
        Assert.Equal(0x02, _pio.Inb(0x92)); // the pulse is taken; A20 stays
    }

    [Fact]
    public void Port_92_without_a_reset_callback_ignores_the_reset_bit()
    {
        var quiet = new QuietPorts();
        QuietPortWindow window = quiet.Windows.Single(w => w.BasePort == QuietPorts.SystemControlPortA);

        window.WriteByteAt(0, 0x01);

        Assert.Equal(0x00, window.ReadByteAt(0));
    }

    [Fact]
    public void Custom_ranges_are_served_and_validated()
    {
        var quiet = new QuietPorts([new QuietPortRange(0x87, 1, "dma-page-ch2"), new QuietPortRange(0x8f, 1, "dma-page-refresh")]);
        Assert.Equal(2, quiet.Windows.Count);
        Assert.Equal(0xff, quiet.Windows[1].ReadByteAt(0));
        Assert.Equal(1, quiet.AccessCount(0x8f));

        Assert.Throws<ArgumentException>(() => new QuietPorts([new QuietPortRange(0x80, 0, "empty")]));
        Assert.Throws<ArgumentException>(() => new QuietPorts([new QuietPortRange(0xfff0, 0x11, "past-the-end")]));
        Assert.Throws<ArgumentException>(() => new QuietPorts([new QuietPortRange(0x80, 1, "")]));
        Assert.Throws<ArgumentException>(() => new QuietPorts(
            [new QuietPortRange(0x2f8, 8, "com2"), new QuietPortRange(0x2ff, 2, "overlapping")]));
        _ = new QuietPorts([new QuietPortRange(0xfff0, 0x10, "up-to-the-end")]);
    }

    [Fact]
    public void An_offset_past_the_window_reads_0xff_and_is_not_counted()
    {
        QuietPortWindow window = _quiet.Windows.Single(w => w.Name == "lpt1");

        Assert.Equal(0xff, window.ReadByteAt(window.Length));
        Assert.Equal(0, _quiet.TotalAccesses);
    }
}
