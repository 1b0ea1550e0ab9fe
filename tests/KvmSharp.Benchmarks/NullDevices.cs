using System.Diagnostics;
using KvmSharp.Devices.Bus;
using KvmSharp.Devices.Serial;

namespace KvmSharp.Benchmarks;

/// <summary>
/// The device on port 0x80 during the benchmark: it does nothing with the data, so the vCPU thread goes
/// through KvmSharp's real bus dispatch. It counts writes and reads the clocks (wall, and the
/// vCPU thread's CPU time) at the first one, as the C reference does: no clock read in the steady state.
/// </summary>
internal sealed class TimestampingNullDevice : IBusDevice
{
    private long _writes;
    private long _firstWriteTimestamp;
    private long _firstWriteThreadCpuNs;

    public long Writes => Volatile.Read(ref _writes);
    public long FirstWriteTimestamp => Volatile.Read(ref _firstWriteTimestamp);
    public long FirstWriteThreadCpuNs => Volatile.Read(ref _firstWriteThreadCpuNs);

    public void Read(ulong offset, Span<byte> data) => data.Clear();

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (_writes++ == 0)
        {
            _firstWriteTimestamp = Stopwatch.GetTimestamp();
            _firstWriteThreadCpuNs = ThreadClock.NowNs();
        }
    }
}

/// <summary>Drops UART output (the benchmark guest writes none).</summary>
internal sealed class NullSerialSink : ISerialSink
{
    public void Write(byte value) { }
}
