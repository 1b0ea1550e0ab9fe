using KvmSharp.Devices.Bus;

namespace KvmSharp.Tests.Integration.Infrastructure;

/// <summary>An MMIO device that answers every read with a fixed 64-bit value and counts accesses.</summary>
public sealed class ConstantReadDevice(ulong value) : IBusDevice
{
    private long _reads;

    public long Reads => Interlocked.Read(ref _reads);

    public void Read(ulong offset, Span<byte> data)
    {
        Interlocked.Increment(ref _reads);
        Span<byte> bytes = stackalloc byte[8];
        BitConverter.TryWriteBytes(bytes, value);
        bytes[..Math.Min(8, data.Length)].CopyTo(data);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
    }
}
