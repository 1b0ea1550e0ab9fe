namespace KvmSharp.Devices.Virtio.Console;

/// <summary>A <c>--port</c> value that does not parse; the message is one line naming the bad key or value and the fix.</summary>
public sealed class ConsolePortSpecException(string message) : FormatException(message);
