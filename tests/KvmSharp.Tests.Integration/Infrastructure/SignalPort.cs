using KvmSharp.Devices.Bus;

namespace KvmSharp.Tests.Integration.Infrastructure;

/// <summary>A port the guest writes progress bytes to; the host waits for a given byte.</summary>
public sealed class SignalPort : IBusDevice
{
    private readonly object _gate = new();
    private readonly List<byte> _received = new();

    public IReadOnlyList<byte> Received
    {
        get { lock (_gate) return _received.ToList(); }
    }

    public void Read(ulong offset, Span<byte> data) => data.Clear();

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        lock (_gate)
        {
            _received.Add(data[0]);
            Monitor.PulseAll(_gate);
        }
    }

    public bool WaitFor(byte value, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        lock (_gate)
        {
            while (!_received.Contains(value))
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero) return false;
                Monitor.Wait(_gate, left);
            }
            return true;
        }
    }
}
