using KvmSharp.Devices.Bus;
using KvmSharp.Devices.Debug;
using KvmSharp.Devices.Serial;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices;

public sealed class HotPathAllocationTests
{
    private const ulong Com1 = 0x3f8;
    private const ulong DebugExit = 0xf4;
    private const ulong Unmapped = 0x80;
    private const int Iterations = 20_000;

    [Fact]
    public void Bus_dispatch_and_uart_accesses_allocate_nothing()
    {
        var interruptLine = new CountingInterruptLine();
        using var sink = new StreamSerialSink(Stream.Null, maxFlushDelay: TimeSpan.FromSeconds(1));
        var uart = new Serial16550(sink, interruptLine);
        var exitPort = new DebugExitPort(static _ => { });
        var pio = new DeviceBus("pio");
        pio.Register(Com1, Serial16550.RegisterBlockLength, uart, "com1");
        pio.Register(DebugExit, DebugExitPort.RegisterBlockLength, exitPort, "debug-exit");
        var mmio = new DeviceBus("mmio");
        mmio.Register(0xd000_0000, 0x1000, new RegisterFileDevice(), "registers");

        // FIFO on, all interrupts on, OUT2 on: every access drives the interrupt line too.
        pio.Write(Com1 + 2, [0x01]);
        pio.Write(Com1 + 1, [0x0f]);
        pio.Write(Com1 + 4, [0x0b]);

        Span<byte> data = stackalloc byte[4];
        RunGuestTraffic(pio, mmio, uart, data, Iterations); // warm up: JIT, tiering, statics

        long before = GC.GetAllocatedBytesForCurrentThread();
        RunGuestTraffic(pio, mmio, uart, data, Iterations);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        Assert.True(interruptLine.Changes > Iterations, "the traffic did not exercise the interrupt line");
        Assert.Equal(2L * 2 * Iterations, pio.UnhandledReads + mmio.UnhandledReads);
        Assert.Equal(2L * 2 * Iterations, pio.UnhandledWrites + mmio.UnhandledWrites);
        Assert.NotNull(exitPort.LastStatus);
    }

    private static void RunGuestTraffic(DeviceBus pio, DeviceBus mmio, Serial16550 uart, Span<byte> data, int iterations)
    {
        for (int i = 0; i < iterations; i++)
        {
            data[0] = (byte)(i % 64 == 0 ? '\n' : 'a' + i % 26);
            pio.Write(Com1, data[..1]);          // THR through the bus
            uart.Write(0, data[..1]);            // THR directly
            pio.Read(Com1 + 5, data[..1]);       // LSR
            pio.Read(Com1 + 2, data[..1]);       // IIR, acknowledges THRE
            uart.EnqueueInput((byte)i);          // host input...
            pio.Read(Com1, data[..1]);           // ...read back from RBR
            pio.Read(Com1 + 6, data[..1]);       // MSR
            pio.Write(DebugExit, data[..1]);
            pio.Read(Unmapped, data);
            pio.Write(Unmapped, data);
            mmio.Read(0xd000_0010, data);
            mmio.Write(0xd000_0010, data);
            mmio.Read(0xe000_0000, data);
            mmio.Write(0xe000_0000, data);
        }
    }

    /// <summary>An MMIO device with plain storage, standing in for a real one.</summary>
    private sealed class RegisterFileDevice : IBusDevice
    {
        private readonly byte[] _registers = new byte[0x1000];

        public void Read(ulong offset, Span<byte> data) => _registers.AsSpan((int)offset, data.Length).CopyTo(data);

        public void Write(ulong offset, ReadOnlySpan<byte> data) => data.CopyTo(_registers.AsSpan((int)offset));
    }

    private sealed class CountingInterruptLine : IInterruptLine
    {
        public long Changes { get; private set; }

        public void SetLevel(bool asserted) => Changes++;
    }
}
