using System.Diagnostics;
using KvmSharp.Devices.Bus;
using KvmSharp.Devices.Serial;

namespace KvmSharp.Benchmarks;

/// <summary>
/// The device on port 0x80 during the benchmark: it does nothing with the data, so the vCPU thread goes
/// through KvmSharp's real bus dispatch. It counts writes and timestamps the first one, as the C
/// reference does (one clock read per run, none in the steady state).
/// </summary>
internal sealed class TimestampingNullDevice : IBusDevice
{
    private long _writes;
    private long _firstWriteTimestamp;

    public long Writes => Volatile.Read(ref _writes);
    public long FirstWriteTimestamp => Volatile.Read(ref _firstWriteTimestamp);

    public void Read(ulong offset, Span<byte> data) => data.Clear();

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (_writes++ == 0) _firstWriteTimestamp = Stopwatch.GetTimestamp();
    }
}

/// <summary>Drops UART output (the benchmark guest writes none).</summary>
internal sealed class NullSerialSink : ISerialSink
{
    public void Write(byte value) { }
}
