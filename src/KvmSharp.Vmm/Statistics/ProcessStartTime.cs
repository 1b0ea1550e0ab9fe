using System.Diagnostics;

namespace KvmSharp.Vmm.Statistics;

/// <summary>When this process started (the kernel counts it in clock ticks, so to about 10 ms), read once.</summary>
public static class ProcessStartTime
{
    private static DateTime? s_utc;

    /// <summary>The process start in UTC, or null where the platform does not tell.</summary>
    public static DateTime? Utc => s_utc ??= Read();

    private static DateTime? Read()
    {
        try
        {
            using var self = Process.GetCurrentProcess();
            return self.StartTime.ToUniversalTime();
        }
        catch (Exception e) when (e is InvalidOperationException or NotSupportedException or System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }
}
