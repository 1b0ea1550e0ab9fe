using KvmSharp.Devices.Bus;

namespace KvmSharp.Tests.Integration.DirtyLog;

/// <summary>
/// An MMIO register where each vCPU reports the end of a round and waits (on its own thread) until
/// the host releases the next one, so the host harvests while no guest code runs; writing
/// <see cref="DirtyWriterGuest.Finished"/> reports that the vCPU is done, without waiting.
/// </summary>
internal sealed class RoundGate : IBusDevice
{
    private readonly object _gate = new();
    private int _arrived;
    private int _generation;
    private bool _abandoned;
    private int _finished;

    public void Read(ulong offset, Span<byte> data) => data.Clear();

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        lock (_gate)
        {
            if (data[0] == DirtyWriterGuest.Finished)
            {
                _finished++;
                Monitor.PulseAll(_gate);
                return;
            }
            int generation = _generation;
            _arrived++;
            Monitor.PulseAll(_gate);
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (_generation == generation && !_abandoned && DateTime.UtcNow < deadline) Monitor.Wait(_gate, TimeSpan.FromSeconds(1));
        }
    }

    /// <summary>Wait until <paramref name="vcpus"/> vCPUs have finished the round.</summary>
    public bool WaitForRound(int vcpus, TimeSpan timeout) => WaitUntil(() => _arrived >= vcpus, timeout);

    /// <summary>Wait until <paramref name="vcpus"/> vCPUs have reported they are done.</summary>
    public bool WaitForFinish(int vcpus, TimeSpan timeout) => WaitUntil(() => _finished >= vcpus, timeout);

    private bool WaitUntil(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        lock (_gate)
        {
            while (!condition())
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero) return false;
                Monitor.Wait(_gate, left);
            }
            return true;
        }
    }

    /// <summary>Let every waiting vCPU go for good (a test ends or failed), so the VM can be stopped.</summary>
    public void Abandon()
    {
        lock (_gate)
        {
            _abandoned = true;
            Monitor.PulseAll(_gate);
        }
    }

    public void Release()
    {
        lock (_gate)
        {
            _arrived = 0;
            _generation++;
            Monitor.PulseAll(_gate);
        }
    }
}
