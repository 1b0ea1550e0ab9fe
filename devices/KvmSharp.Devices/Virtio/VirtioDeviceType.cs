namespace KvmSharp.Devices.Virtio;

/// <summary>Virtio device ids (virtio 1.x, "Device Types"); the PCI device id is 0x1040 + this.</summary>
public enum VirtioDeviceType : ushort
{
    Net = 1,
    Block = 2,
    Console = 3,
    Entropy = 4,
    Vsock = 19,
    Fs = 26,
}
