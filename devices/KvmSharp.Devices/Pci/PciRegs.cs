namespace KvmSharp.Devices.Pci;

/// <summary>
/// Offsets and bits of the type-0 configuration header and the MSI-X capability, named as in
/// &lt;linux/pci_regs.h&gt; (each value is proven against that header by a generated static_assert).
/// </summary>
public static class PciRegs
{
    public const int PCI_VENDOR_ID = 0x00;
    public const int PCI_DEVICE_ID = 0x02;
    public const int PCI_COMMAND = 0x04;
    public const int PCI_STATUS = 0x06;
    public const int PCI_CLASS_REVISION = 0x08;
    public const int PCI_REVISION_ID = 0x08;
    public const int PCI_CLASS_PROG = 0x09;
    public const int PCI_CLASS_DEVICE = 0x0a;
    public const int PCI_CACHE_LINE_SIZE = 0x0c;
    public const int PCI_LATENCY_TIMER = 0x0d;
    public const int PCI_HEADER_TYPE = 0x0e;
    public const int PCI_BIST = 0x0f;
    public const int PCI_BASE_ADDRESS_0 = 0x10;
    public const int PCI_BASE_ADDRESS_5 = 0x24;
    public const int PCI_CARDBUS_CIS = 0x28;
    public const int PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
    public const int PCI_SUBSYSTEM_ID = 0x2e;
    public const int PCI_ROM_ADDRESS = 0x30;
    public const int PCI_CAPABILITY_LIST = 0x34;
    public const int PCI_INTERRUPT_LINE = 0x3c;
    public const int PCI_INTERRUPT_PIN = 0x3d;
    public const int PCI_MIN_GNT = 0x3e;
    public const int PCI_MAX_LAT = 0x3f;
    public const int PCI_STD_HEADER_SIZEOF = 64;
    public const int PCI_CFG_SPACE_SIZE = 256;
    public const int PCI_CFG_SPACE_EXP_SIZE = 4096;

    public const int PCI_COMMAND_IO = 0x1;
    public const int PCI_COMMAND_MEMORY = 0x2;
    public const int PCI_COMMAND_MASTER = 0x4;
    public const int PCI_COMMAND_PARITY = 0x40;
    public const int PCI_COMMAND_SERR = 0x100;
    public const int PCI_COMMAND_INTX_DISABLE = 0x400;

    public const int PCI_STATUS_INTERRUPT = 0x08;
    public const int PCI_STATUS_CAP_LIST = 0x10;
    public const int PCI_STATUS_PARITY = 0x100;
    public const int PCI_STATUS_SIG_TARGET_ABORT = 0x800;
    public const int PCI_STATUS_REC_TARGET_ABORT = 0x1000;
    public const int PCI_STATUS_REC_MASTER_ABORT = 0x2000;
    public const int PCI_STATUS_SIG_SYSTEM_ERROR = 0x4000;
    public const int PCI_STATUS_DETECTED_PARITY = 0x8000;

    public const int PCI_HEADER_TYPE_NORMAL = 0;

    public const int PCI_BASE_ADDRESS_SPACE_IO = 0x01;
    public const int PCI_BASE_ADDRESS_SPACE_MEMORY = 0x00;
    public const int PCI_BASE_ADDRESS_MEM_TYPE_32 = 0x00;
    public const int PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x04;
    public const int PCI_BASE_ADDRESS_MEM_PREFETCH = 0x08;

    public const int PCI_CAP_LIST_ID = 0;
    public const int PCI_CAP_LIST_NEXT = 1;
    public const int PCI_CAP_ID_VNDR = 0x09;
    public const int PCI_CAP_ID_MSIX = 0x11;

    public const int PCI_MSIX_FLAGS = 2;
    public const int PCI_MSIX_FLAGS_QSIZE = 0x07ff;
    public const int PCI_MSIX_FLAGS_MASKALL = 0x4000;
    public const int PCI_MSIX_FLAGS_ENABLE = 0x8000;
    public const int PCI_MSIX_TABLE = 4;
    public const int PCI_MSIX_TABLE_BIR = 0x00000007;
    public const int PCI_MSIX_PBA = 8;
    public const int PCI_MSIX_PBA_BIR = 0x00000007;
    public const int PCI_CAP_MSIX_SIZEOF = 12;
    public const int PCI_MSIX_ENTRY_SIZE = 16;
    public const int PCI_MSIX_ENTRY_LOWER_ADDR = 0x0;
    public const int PCI_MSIX_ENTRY_UPPER_ADDR = 0x4;
    public const int PCI_MSIX_ENTRY_DATA = 0x8;
    public const int PCI_MSIX_ENTRY_VECTOR_CTRL = 0xc;
    public const int PCI_MSIX_ENTRY_CTRL_MASKBIT = 0x1;

    /// <summary>Status bits software clears by writing 1 (the error bits; PCI 3.0, 6.2.3).</summary>
    public const int StatusWriteOneToClearBits =
        PCI_STATUS_PARITY | PCI_STATUS_SIG_TARGET_ABORT | PCI_STATUS_REC_TARGET_ABORT |
        PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_SIG_SYSTEM_ERROR | PCI_STATUS_DETECTED_PARITY;
}
