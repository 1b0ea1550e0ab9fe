namespace KvmSharp.Devices.FwCfg;

/// <summary>A named fw_cfg item ("etc/..."), listed in FW_CFG_FILE_DIR with the selector it is read through.</summary>
public sealed record FwCfgFile(string Name, byte[] Contents);
