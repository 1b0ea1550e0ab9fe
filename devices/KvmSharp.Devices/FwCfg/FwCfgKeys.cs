namespace KvmSharp.Devices.FwCfg;

/// <summary>The fw_cfg selector keys KvmSharp answers (QEMU's include/standard-headers/linux/qemu_fw_cfg.h names).</summary>
public static class FwCfgKeys
{
    public const ushort FW_CFG_SIGNATURE = 0x00;
    public const ushort FW_CFG_ID = 0x01;
    public const ushort FW_CFG_RAM_SIZE = 0x03;
    public const ushort FW_CFG_NB_CPUS = 0x05;
    public const ushort FW_CFG_MAX_CPUS = 0x0f;
    public const ushort FW_CFG_FILE_DIR = 0x19;
    public const ushort FW_CFG_FILE_FIRST = 0x20;

    /// <summary>FW_CFG_ID bit 0: the traditional (selector + data port) interface. Bit 1 (DMA) stays clear.</summary>
    public const uint FW_CFG_VERSION = 0x01;

    /// <summary>A file directory entry: size (BE32), select (BE16), reserved (16 bits), name (56 bytes, NUL-terminated).</summary>
    public const int FileEntrySize = 64, FileNameSize = 56;
}
