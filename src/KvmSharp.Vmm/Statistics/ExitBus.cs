namespace KvmSharp.Vmm.Statistics;

/// <summary>Which bus an exit's access went to, for per-range statistics.</summary>
public enum ExitBus
{
    None,
    Port,
    Mmio,
}
