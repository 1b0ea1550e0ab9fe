using KvmSharp.Devices.Serial;

namespace KvmSharp.Devices.Virtio.Console;

/// <summary>A port whose output is appended to a file (written by a <see cref="StreamSerialSink"/> thread, so a slow disk never blocks the device). It has no input.</summary>
public sealed class FileConsolePortBackend : IConsolePortBackend
{
    private readonly StreamSerialSink _sink;

    private FileConsolePortBackend(StreamSerialSink sink) => _sink = sink;

    public bool IsConnected => true;

    /// <summary>Open (create or append to) <paramref name="path"/>. Throws <see cref="IOException"/> naming the port and the file.</summary>
    public static FileConsolePortBackend Open(string portName, string path)
    {
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"--port name={portName}: cannot open path={path} for writing: {e.Message}; give a writable file", e);
        }

        return new FileConsolePortBackend(new StreamSerialSink(stream, maxFlushDelay: TimeSpan.FromMilliseconds(100)));
    }

    /// <summary>Bytes lost because the file could not keep up or failed.</summary>
    public long DroppedBytes => _sink.DroppedBytes;

    public void Start(Action<ReadOnlyMemory<byte>> input, Action<bool> connectionChanged)
    {
    }

    public void Write(ReadOnlySpan<byte> data)
    {
        foreach (byte value in data)
        {
            _sink.Write(value);
        }
    }

    /// <summary>Wait (bounded) until what was written reached the file.</summary>
    public bool Flush(TimeSpan timeout) => _sink.Flush(timeout);

    public void Dispose() => _sink.Dispose();
}
