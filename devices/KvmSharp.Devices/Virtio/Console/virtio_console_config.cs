using System.Runtime.InteropServices;
using KvmSharp.Devices.Virtio.Queues;

namespace KvmSharp.Devices.Virtio.Console;

/// <summary>virtio-console's configuration space (packed, little-endian).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
[VirtioLayout("linux/virtio_console.h", "struct virtio_console_config")]
public struct virtio_console_config
{
    /// <summary>Console size (VIRTIO_CONSOLE_F_SIZE; not offered).</summary>
    public ushort cols;
    public ushort rows;
    /// <summary>How many ports the device can hold (VIRTIO_CONSOLE_F_MULTIPORT).</summary>
    public uint max_nr_ports;
    /// <summary>Emergency write register (VIRTIO_CONSOLE_F_EMERG_WRITE): a byte written here is console output.</summary>
    public uint emerg_wr;
}
