using KvmSharp.Devices.Serial;

namespace KvmSharp.Hosting;

/// <summary>Feeds stdin (what the user types, or a pipe) into the UART's receive FIFO until EOF.</summary>
public sealed class SerialInputPump : IDisposable
{
    private readonly CancellationTokenSource _stop;

    private SerialInputPump(Serial16550 serial, CancellationToken cancellation)
    {
        _stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        var thread = new Thread(() => Pump(serial, _stop.Token)) { IsBackground = true, Name = "serial-input" };
        thread.Start();
    }

    public static SerialInputPump Start(Serial16550 serial, CancellationToken cancellation) => new(serial, cancellation);

    private static void Pump(Serial16550 serial, CancellationToken cancellation)
    {
        using var stdin = Console.OpenStandardInput();
        var buffer = new byte[256];
        while (!cancellation.IsCancellationRequested)
        {
            int read = stdin.Read(buffer, 0, buffer.Length);
            if (read <= 0) return;
            var pending = buffer.AsSpan(0, read);
            while (!pending.IsEmpty && !cancellation.IsCancellationRequested)
            {
                int taken = serial.EnqueueInput(pending);
                pending = pending[taken..];
                if (!pending.IsEmpty) Thread.Sleep(1); // FIFO full: let the guest drain it
            }
        }
    }

    public void Dispose() => _stop.Cancel();
}
