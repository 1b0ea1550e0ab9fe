using System.Runtime.InteropServices;
using KvmSharp.Devices.Virtio.Queues;

namespace KvmSharp.Devices.Virtio.Console;

/// <summary>A message on the multiport control queues (little-endian); a PORT_NAME message is followed by the name's bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
[VirtioLayout("linux/virtio_console.h", "struct virtio_console_control")]
public struct virtio_console_control
{
    public const int Size = 8;

    /// <summary>Port number.</summary>
    public uint id;
    /// <summary><see cref="VirtioConsoleControlEvent"/>.</summary>
    public ushort @event;
    public ushort value;
}
