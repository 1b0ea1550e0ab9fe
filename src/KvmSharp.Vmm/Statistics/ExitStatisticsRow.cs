namespace KvmSharp.Vmm.Statistics;

/// <summary>One line of the exit statistics: what was counted, how often, and the handler time it took.</summary>
/// <param name="Group">"reason", "pio" or "mmio".</param>
/// <param name="Name">The exit reason (KVM_EXIT_IO) or the bus range ('serial0' [0x3f8..0x3ff]).</param>
public sealed record ExitStatisticsRow(string Group, string Name, long Count, TimeSpan HandlerTime)
{
    /// <summary>Mean handler time per exit.</summary>
    public TimeSpan Average => Count == 0 ? TimeSpan.Zero : HandlerTime / Count;
}
