using KvmSharp.Devices.Bus;

namespace KvmSharp.Tests.Unit.Vcpus;

/// <summary>
/// A bus device that records each access (without allocating, up to <see cref="Capacity"/>) and
/// answers reads with a running byte counter, so every byte read is distinct.
/// </summary>
internal sealed class RecordingIoDevice(byte firstReadByte = 0x10) : IBusDevice
{
    public const int Capacity = 64;

    private readonly Access[] _accesses = new Access[Capacity];
    private byte _nextReadByte = firstReadByte;

    public readonly record struct Access(bool IsWrite, ulong Offset, int Length, ulong Bytes);

    /// <summary>Accesses seen so far (the first <see cref="Capacity"/> are kept).</summary>
    public int Count { get; private set; }

    public Access this[int index] => index < Count && index < Capacity ? _accesses[index] : throw new ArgumentOutOfRangeException(nameof(index));

    public void Clear() => Count = 0;

    public void Read(ulong offset, Span<byte> data)
    {
        for (int i = 0; i < data.Length; i++) data[i] = _nextReadByte++;
        Record(false, offset, data);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data) => Record(true, offset, data);

    private void Record(bool isWrite, ulong offset, ReadOnlySpan<byte> data)
    {
        ulong bytes = 0;
        for (int i = data.Length - 1; i >= 0; i--) bytes = (bytes << 8) | data[i];
        if (Count < Capacity) _accesses[Count] = new Access(isWrite, offset, data.Length, bytes);
        Count++;
    }
}
