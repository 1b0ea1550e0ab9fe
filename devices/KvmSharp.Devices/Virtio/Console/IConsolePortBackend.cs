namespace KvmSharp.Devices.Virtio.Console;

/// <summary>The host side of a named virtio-console port: where the guest's output goes and where its input comes from.</summary>
public interface IConsolePortBackend : IDisposable
{
    /// <summary>Whether a host peer is there (a file always is; a socket when a client is connected). Sent to the guest as PORT_OPEN.</summary>
    bool IsConnected { get; }

    /// <summary>Start delivering: <paramref name="input"/> gets bytes for the guest, <paramref name="connectionChanged"/> the peer's comings and goings. Both from any thread.</summary>
    void Start(Action<ReadOnlyMemory<byte>> input, Action<bool> connectionChanged);

    /// <summary>Bytes the guest wrote to the port. Must not block for long (called under the device's lock).</summary>
    void Write(ReadOnlySpan<byte> data);
}
