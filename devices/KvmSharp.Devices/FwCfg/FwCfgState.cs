namespace KvmSharp.Devices.FwCfg;

/// <summary>The guest-visible state of the fw_cfg ports: the selected item and how far into it the guest has read.</summary>
public readonly record struct FwCfgState(ushort Selector, uint Offset);
