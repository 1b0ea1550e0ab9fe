namespace KvmSharp.Devices.Virtio.Console;

/// <summary>virtio_console_control.event values (linux/virtio_console.h).</summary>
public enum VirtioConsoleControlEvent : ushort
{
    VIRTIO_CONSOLE_DEVICE_READY = 0,
    VIRTIO_CONSOLE_PORT_ADD = 1,
    VIRTIO_CONSOLE_PORT_REMOVE = 2,
    VIRTIO_CONSOLE_PORT_READY = 3,
    VIRTIO_CONSOLE_CONSOLE_PORT = 4,
    VIRTIO_CONSOLE_RESIZE = 5,
    VIRTIO_CONSOLE_PORT_OPEN = 6,
    VIRTIO_CONSOLE_PORT_NAME = 7,
}
