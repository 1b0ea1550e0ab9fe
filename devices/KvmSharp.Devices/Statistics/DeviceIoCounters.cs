namespace KvmSharp.Devices.Statistics;

/// <summary>
/// A device's I/O as the guest sees it, counted where requests complete: reads are data the guest received
/// (a block read, console input, entropy), writes are data it sent (a block write, console output). Plain
/// interlocked fields, preallocated with the device: the I/O path allocates nothing for them, and the metrics
/// listener reads them when it collects.
/// </summary>
public sealed class DeviceIoCounters
{
    private long _readOps;
    private long _readBytes;
    private long _writeOps;
    private long _writeBytes;

    public long ReadOps => Interlocked.Read(ref _readOps);
    public long ReadBytes => Interlocked.Read(ref _readBytes);
    public long WriteOps => Interlocked.Read(ref _writeOps);
    public long WriteBytes => Interlocked.Read(ref _writeBytes);

    /// <summary>One request that gave the guest <paramref name="bytes"/> of data.</summary>
    public void CountRead(ulong bytes)
    {
        Interlocked.Increment(ref _readOps);
        Interlocked.Add(ref _readBytes, (long)bytes);
    }

    /// <summary>One request that took <paramref name="bytes"/> of data from the guest.</summary>
    public void CountWrite(ulong bytes)
    {
        Interlocked.Increment(ref _writeOps);
        Interlocked.Add(ref _writeBytes, (long)bytes);
    }
}
