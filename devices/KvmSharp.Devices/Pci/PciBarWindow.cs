namespace KvmSharp.Devices.Pci;

/// <summary>The MMIO window a BAR is placed in: 32-bit BARs must sit below 4 GiB, 64-bit ones go above guest RAM.</summary>
public enum PciBarWindow
{
    Below4G,
    Above4G,
}
