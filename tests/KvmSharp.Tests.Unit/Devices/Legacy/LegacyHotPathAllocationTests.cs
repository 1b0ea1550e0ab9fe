using KvmSharp.Devices.Bus;
using KvmSharp.Devices.Legacy;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Legacy;

public sealed class LegacyHotPathAllocationTests
{
    private const int Iterations = 20_000;

    [Fact]
    public void Guest_accesses_to_the_legacy_devices_allocate_nothing()
    {
        var irq = new CountingInterruptLine();
        long resets = 0;
        var kbc = new I8042Controller(() => resets++, irq);
        DateTime now = new(2024, 3, 15, 13, 45, 27, DateTimeKind.Utc);
        var rtc = new CmosRtc(() => now = now.AddMilliseconds(3));
        var quiet = new QuietPorts(() => resets++);
        var pio = new DeviceBus("pio");
        pio.Register(I8042Controller.BasePort, I8042Controller.RegisterBlockLength, kbc, "i8042");
        pio.Register(CmosRtc.BasePort, CmosRtc.RegisterBlockLength, rtc, "rtc");
        foreach (QuietPortWindow window in quiet.Windows)
        {
            pio.Register(window.BasePort, window.Length, window, window.Name);
        }

        Span<byte> data = stackalloc byte[4];
        RunGuestTraffic(pio, kbc, data, Iterations); // warm up: JIT, tiering, statics

        long resetsBefore = resets;
        long before = GC.GetAllocatedBytesForCurrentThread();
        RunGuestTraffic(pio, kbc, data, Iterations);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        Assert.True(irq.Changes > Iterations, "the traffic did not exercise the keyboard interrupt line");
        Assert.Equal(2L * Iterations, resets - resetsBefore);
        Assert.Equal(0, pio.UnhandledReads + pio.UnhandledWrites);
        Assert.True(quiet.AccessCount(0x80) >= Iterations);
    }

    private static void RunGuestTraffic(DeviceBus pio, I8042Controller kbc, Span<byte> data, int iterations)
    {
        for (int i = 0; i < iterations; i++)
        {
            // i8042: command byte round trip, self-test, keyboard identify, host Ctrl-Alt-Del, reset pulse.
            Out(pio, 0x64, 0x20, data);
            In(pio, 0x64, data);
            In(pio, 0x60, data);
            Out(pio, 0x64, 0xaa, data);
            In(pio, 0x60, data);
            Out(pio, 0x60, 0xf2, data);
            kbc.SendCtrlAltDel();
            for (int n = 0; n < 12; n++)
            {
                In(pio, 0x60, data);
            }

            In(pio, 0x61, data);
            Out(pio, 0x64, 0xfe, data);

            // RTC: the fields Linux reads, a register C read, a CMOS RAM byte, a time write, 12-hour binary mode.
            for (byte index = 0; index <= 0x0d; index++)
            {
                Out(pio, 0x70, (byte)(0x80 | index), data);
                In(pio, 0x71, data);
            }

            Out(pio, 0x70, 0x32, data);
            In(pio, 0x71, data);
            Out(pio, 0x70, 0x0b, data);
            Out(pio, 0x71, (byte)(i % 2 == 0 ? 0x82 : 0x04), data); // SET + BCD 24h, then binary 12h (clears SET)
            Out(pio, 0x70, 0x02, data);
            Out(pio, 0x71, 0x10, data);
            Out(pio, 0x70, 0x40, data);
            Out(pio, 0x71, (byte)i, data);

            // Quiet ports: io_delay, a COM2 probe, a wide PCI config read, port 0x92 reset.
            Out(pio, 0x80, 0x00, data);
            In(pio, 0x2fd, data);
            pio.Read(0xcf8, data);
            Out(pio, 0x92, 0x03, data);
        }
    }

    private static void In(DeviceBus pio, ushort port, Span<byte> data) => pio.Read(port, data[..1]);

    private static void Out(DeviceBus pio, ushort port, byte value, Span<byte> data)
    {
        data[0] = value;
        pio.Write(port, data[..1]);
    }

    private sealed class CountingInterruptLine : IInterruptLine
    {
        public long Changes { get; private set; }

        public void SetLevel(bool asserted) => Changes++;
    }
}
