namespace KvmSharp.Devices.Virtio.Transport;

/// <summary>
/// The modern virtio-pci layout (virtio 1.x, 4.1.4), named as in &lt;linux/virtio_pci.h&gt;: capability
/// types, the offsets of <c>struct virtio_pci_cap</c> and <c>struct virtio_pci_notify_cap</c>, and the
/// registers of <c>struct virtio_pci_common_cfg</c>. Every value is proven against that header by a generated
/// static_assert (the Struct* sizes against <c>sizeof</c>).
/// </summary>
public static class VirtioPciRegs
{
    public const int VIRTIO_PCI_CAP_COMMON_CFG = 1;
    public const int VIRTIO_PCI_CAP_NOTIFY_CFG = 2;
    public const int VIRTIO_PCI_CAP_ISR_CFG = 3;
    public const int VIRTIO_PCI_CAP_DEVICE_CFG = 4;
    public const int VIRTIO_PCI_CAP_PCI_CFG = 5;

    public const int VIRTIO_PCI_CAP_VNDR = 0;
    public const int VIRTIO_PCI_CAP_NEXT = 1;
    public const int VIRTIO_PCI_CAP_LEN = 2;
    public const int VIRTIO_PCI_CAP_CFG_TYPE = 3;
    public const int VIRTIO_PCI_CAP_BAR = 4;
    public const int VIRTIO_PCI_CAP_OFFSET = 8;
    public const int VIRTIO_PCI_CAP_LENGTH = 12;
    public const int VIRTIO_PCI_NOTIFY_CAP_MULT = 16;

    public const int VIRTIO_PCI_COMMON_DFSELECT = 0;
    public const int VIRTIO_PCI_COMMON_DF = 4;
    public const int VIRTIO_PCI_COMMON_GFSELECT = 8;
    public const int VIRTIO_PCI_COMMON_GF = 12;
    public const int VIRTIO_PCI_COMMON_MSIX = 16;
    public const int VIRTIO_PCI_COMMON_NUMQ = 18;
    public const int VIRTIO_PCI_COMMON_STATUS = 20;
    public const int VIRTIO_PCI_COMMON_CFGGENERATION = 21;
    public const int VIRTIO_PCI_COMMON_Q_SELECT = 22;
    public const int VIRTIO_PCI_COMMON_Q_SIZE = 24;
    public const int VIRTIO_PCI_COMMON_Q_MSIX = 26;
    public const int VIRTIO_PCI_COMMON_Q_ENABLE = 28;
    public const int VIRTIO_PCI_COMMON_Q_NOFF = 30;
    public const int VIRTIO_PCI_COMMON_Q_DESCLO = 32;
    public const int VIRTIO_PCI_COMMON_Q_DESCHI = 36;
    public const int VIRTIO_PCI_COMMON_Q_AVAILLO = 40;
    public const int VIRTIO_PCI_COMMON_Q_AVAILHI = 44;
    public const int VIRTIO_PCI_COMMON_Q_USEDLO = 48;
    public const int VIRTIO_PCI_COMMON_Q_USEDHI = 52;

    /// <summary>"No vector": the driver wants no MSI-X message for this queue or for configuration changes.</summary>
    public const int VIRTIO_MSI_NO_VECTOR = 0xffff;

    /// <summary>ISR status bit: a configuration change (read-to-clear, INTx only).</summary>
    public const int VIRTIO_PCI_ISR_CONFIG = 0x2;

    /// <summary>ISR status bit: a queue interrupt (virtio 1.x, 4.1.4.5; the header names no macro for it).</summary>
    public const int IsrQueue = 0x1;

    /// <summary><c>sizeof(struct virtio_pci_cap)</c>.</summary>
    public const int StructVirtioPciCapSize = 16;

    /// <summary><c>sizeof(struct virtio_pci_notify_cap)</c>.</summary>
    public const int StructVirtioPciNotifyCapSize = 20;

    /// <summary><c>sizeof(struct virtio_pci_common_cfg)</c>: the registers KvmSharp implements.</summary>
    public const int StructVirtioPciCommonCfgSize = 56;

    /// <summary>PCI vendor id of every virtio device.</summary>
    public const ushort VirtioPciVendorId = 0x1af4;

    /// <summary>A modern (non-transitional) device's PCI device id is this plus the virtio device type.</summary>
    public const ushort VirtioPciModernDeviceIdBase = 0x1040;

    /// <summary>Revision id of a modern-only device (virtio 1.x, 4.1.2.1: non-transitional devices SHOULD have 1).</summary>
    public const byte VirtioPciModernRevision = 1;
}
