using KvmSharp.Devices.Bus;

namespace KvmSharp.Tests.Unit.Devices;

/// <summary>Records the last access it received and answers reads with a fixed byte.</summary>
internal sealed class RecordingBusDevice(byte readValue = 0x42) : IBusDevice
{
    public int Reads { get; private set; }

    public int Writes { get; private set; }

    public ulong LastOffset { get; private set; } = ulong.MaxValue;

    public int LastLength { get; private set; }

    public byte[] LastWritten { get; private set; } = [];

    public void Read(ulong offset, Span<byte> data)
    {
        Reads++;
        LastOffset = offset;
        LastLength = data.Length;
        data.Fill(readValue);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        Writes++;
        LastOffset = offset;
        LastLength = data.Length;
        LastWritten = data.ToArray();
    }
}
