using KvmSharp.Devices.Serial;
using Xunit;
using static KvmSharp.Tests.Unit.Devices.UartRegister;

namespace KvmSharp.Tests.Unit.Devices;

public sealed class Serial16550InputThreadingTests
{
    private const int ByteCount = 50_000;
    // A liveness bound, not a speed target: on a loaded 2-CPU host every FIFO hand-off waits for a time slice.
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(180);

    [Fact]
    public void Input_from_another_thread_arrives_complete_and_in_order_while_the_guest_reads()
    {
        var uart = new Serial16550(new CapturingSerialSink());
        uart.WriteRegister(InterruptId, 0x01);
        uart.WriteRegister(InterruptEnable, 0x05);

        using var stop = new CancellationTokenSource(Deadline);
        int refused = 0;
        var producer = new Thread(() =>
        {
            var chunk = new byte[Serial16550.ReceiveFifoCapacity];
            var spinner = new SpinWait();
            // Pace like a host input pump should: only offer bytes the FIFO has room for.
            for (int i = 0; i < ByteCount && !stop.IsCancellationRequested;)
            {
                int room = Math.Min(uart.ReceiveFifoFreeSpace, ByteCount - i);
                if (room == 0)
                {
                    spinner.SpinOnce(); // yields once spinning stops paying, so the reader gets the CPU
                    continue;
                }

                for (int j = 0; j < room; j++)
                {
                    chunk[j] = (byte)(i + j);
                }

                int accepted = room == 1 ? (uart.EnqueueInput(chunk[0]) ? 1 : 0) : uart.EnqueueInput(chunk.AsSpan(0, room));
                refused += room - accepted;
                i += accepted;
            }
        });
        producer.Start();

        int received = 0;
        int outOfOrder = 0;
        int overruns = 0;
        var waiting = new SpinWait();
        while (received < ByteCount && !stop.IsCancellationRequested)
        {
            byte status = uart.ReadRegister(LineStatus);
            overruns += (status & 0x02) >> 1;
            if ((status & 0x01) == 0)
            {
                waiting.SpinOnce();
                continue;
            }

            // Interleave IIR reads, as an interrupt handler would.
            if ((uart.ReadRegister(InterruptId) & 0x0f) != 0x04)
            {
                outOfOrder++;
            }

            if (uart.ReadRegister(Data) != (byte)received)
            {
                outOfOrder++;
            }

            received++;
        }

        Assert.True(producer.Join(Deadline), "the input thread did not finish");
        Assert.Equal(ByteCount, received);
        Assert.Equal(0, outOfOrder);
        Assert.Equal(0, overruns);
        Assert.Equal(0, refused);
    }
}
