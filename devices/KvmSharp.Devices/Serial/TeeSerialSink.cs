namespace KvmSharp.Devices.Serial;

/// <summary>Sends every byte to several sinks (the console and a capture for --expect, say).</summary>
public sealed class TeeSerialSink(params ISerialSink[] sinks) : ISerialSink
{
    public void Write(byte value)
    {
        foreach (var sink in sinks) sink.Write(value);
    }
}
