namespace KvmSharp.Devices.Virtio.Block;

/// <summary>A <c>--drive</c> value that does not parse; the message is one line naming the bad key or value and the fix.</summary>
public sealed class DriveSpecException(string message) : FormatException(message);
