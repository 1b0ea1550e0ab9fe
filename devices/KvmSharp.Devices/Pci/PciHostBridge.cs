namespace KvmSharp.Devices.Pci;

/// <summary>
/// The host bridge at 00:00.0: a function with no BARs that tells the guest a PCI hierarchy is here
/// (class 06:00). Its id is Red Hat's generic "PCIe host bridge" (1b36:0008), which guests bind no
/// chipset-specific quirks to.
/// </summary>
public sealed class PciHostBridge : PciFunction
{
    public const ushort VendorId = 0x1b36;
    public const ushort DeviceId = 0x0008;

    /// <summary>Base class 06 (bridge), sub-class 00 (host bridge), interface 00.</summary>
    public const uint ClassCode = 0x060000;

    public PciHostBridge()
        : base("host-bridge", VendorId, DeviceId, revisionId: 0, ClassCode, subsystemVendorId: VendorId, subsystemId: 0x1100)
    {
    }
}
