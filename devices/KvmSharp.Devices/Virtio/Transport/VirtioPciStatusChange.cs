namespace KvmSharp.Devices.Virtio.Transport;

/// <summary>What a driver's write to the common configuration asks of the transport beyond storing registers.</summary>
public enum VirtioPciStatusChange
{
    None,

    /// <summary>device_status was written 0: reset the device.</summary>
    Reset,

    /// <summary>DRIVER_OK was set after a successful feature negotiation: activate the device.</summary>
    Activate,
}
