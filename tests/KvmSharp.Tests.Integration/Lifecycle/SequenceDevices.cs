using KvmSharp.Devices.Bus;
using KvmSharp.Memory.PageTracking;

namespace KvmSharp.Tests.Integration.Lifecycle;

/// <summary>Answers each read with the next value of a counter (0, 1, 2, ...): a repeated read skips a value, so the guest's record shows a gap.</summary>
internal sealed class CountingReadDevice : IBusDevice
{
    private uint _next;

    /// <summary>Reads answered so far.</summary>
    public uint Reads => Volatile.Read(ref _next);

    public void Read(ulong offset, Span<byte> data)
    {
        uint value = Interlocked.Increment(ref _next) - 1;
        BitConverter.TryWriteBytes(data.Length >= 4 ? data : stackalloc byte[4], value);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
    }
}

/// <summary>Where the guest writes each value it read: expects exactly 0, 1, 2, ... and notes the first departure.</summary>
internal sealed class SequenceRecorder(string what) : IBusDevice
{
    private uint _expected;
    private string? _firstError;

    /// <summary>Values recorded so far (all in order while <see cref="FirstError"/> is null).</summary>
    public uint Count => Volatile.Read(ref _expected);

    /// <summary>The first value out of sequence: a lost read (gap), a repeated read (gap on the counter) or a repeated write (duplicate).</summary>
    public string? FirstError => Volatile.Read(ref _firstError);

    public void Read(ulong offset, Span<byte> data) => data.Clear();

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        uint value = BitConverter.ToUInt32(data.Length >= 4 ? data : [data[0], 0, 0, 0]);
        uint expected = _expected;
        if (value != expected && _firstError is null)
            Volatile.Write(ref _firstError, $"{what}: the guest recorded {value} where {expected} was due ({(value < expected ? "a write or read repeated" : "a read lost or repeated")})");
        Volatile.Write(ref _expected, value + 1);
    }
}

/// <summary>A page-track notifier that checks the guest's tracked stores carry increasing counter values.</summary>
internal sealed class IncreasingWriteNotifier : IPageTrackNotifier
{
    private long _writes;
    private long _last = -1;
    private string? _firstError;

    public long Writes => Interlocked.Read(ref _writes);
    public string? FirstError => Volatile.Read(ref _firstError);

    public void TrackWrite(ulong gpa, ReadOnlySpan<byte> bytes)
    {
        Interlocked.Increment(ref _writes);
        if (bytes.Length != 4) return;
        long value = BitConverter.ToUInt32(bytes);
        if (value <= _last && _firstError is null) Volatile.Write(ref _firstError, $"tracked store of {value} after {_last}: a store was repeated");
        _last = value;
    }

    public void TrackRemoveRegion(ulong gfn, ulong pageCount)
    {
    }
}
