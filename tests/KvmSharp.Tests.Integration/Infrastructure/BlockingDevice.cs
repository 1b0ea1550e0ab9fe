using KvmSharp.Devices.Bus;

namespace KvmSharp.Tests.Integration.Infrastructure;

/// <summary>
/// A port or MMIO device whose handler blocks until the test releases it: wedges the vCPU that touches
/// it inside a userspace exit handler on purpose (for progress checks, pause-during-I/O and teardown
/// tests). Reads answer <see cref="Value"/>; the handler gives up after <see cref="GiveUpAfter"/> so a
/// failing test cannot hang the run.
/// </summary>
public sealed class BlockingDevice(uint value) : IBusDevice
{
    private readonly ManualResetEventSlim _entered = new();
    private readonly ManualResetEventSlim _released = new();
    private int _accesses;

    public uint Value { get; } = value;

    public TimeSpan GiveUpAfter { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How many accesses reached the handler.</summary>
    public int Accesses => Volatile.Read(ref _accesses);

    /// <summary>Wait until a vCPU is inside the handler.</summary>
    public bool WaitEntered(TimeSpan timeout) => _entered.Wait(timeout);

    /// <summary>Let the handler (and every later access) return.</summary>
    public void Release() => _released.Set();

    public void Read(ulong offset, Span<byte> data)
    {
        Block();
        Span<byte> bytes = stackalloc byte[4];
        BitConverter.TryWriteBytes(bytes, Value);
        bytes[..Math.Min(4, data.Length)].CopyTo(data);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data) => Block();

    private void Block()
    {
        Interlocked.Increment(ref _accesses);
        _entered.Set();
        _released.Wait(GiveUpAfter);
    }
}
