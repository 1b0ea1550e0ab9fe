using System.Globalization;

namespace KvmSharp.Systemd;

/// <summary>
/// The service manager's watchdog as sd_watchdog_enabled(3) reads it: WATCHDOG_USEC (microseconds) asks for a
/// WATCHDOG=1 ping more often than that, and WATCHDOG_PID, when set, says which process it is meant for.
/// </summary>
/// <param name="Timeout">WATCHDOG_USEC: with no ping for this long the manager acts (systemd kills and restarts).</param>
public sealed record SystemdWatchdog(TimeSpan Timeout)
{
    public const string TimeoutVariable = "WATCHDOG_USEC";
    public const string ProcessVariable = "WATCHDOG_PID";

    /// <summary>How often to ping: half the timeout, as sd_watchdog_enabled(3) advises.</summary>
    public TimeSpan PingInterval => Timeout / 2;

    /// <summary>
    /// How long a vCPU may sit in an exit handler (or the event loop fail to run a no-op) before the pings stop:
    /// half the timeout, so systemd acts at most one and a half timeouts after a thread wedged.
    /// </summary>
    public TimeSpan StallThreshold => Timeout / 2;

    /// <summary>
    /// The watchdog the environment asks for: null when WATCHDOG_USEC is unset, or WATCHDOG_PID names another
    /// process. A value that is not a number is an error naming the variable (sd_watchdog_enabled's -EINVAL).
    /// </summary>
    public static SystemdWatchdog? FromEnvironment() =>
        Parse(Environment.GetEnvironmentVariable(TimeoutVariable), Environment.GetEnvironmentVariable(ProcessVariable), Environment.ProcessId);

    public static SystemdWatchdog? Parse(string? microseconds, string? processId, int ownProcessId)
    {
        if (string.IsNullOrEmpty(microseconds)) return null;
        if (!string.IsNullOrEmpty(processId))
        {
            if (!int.TryParse(processId, NumberStyles.None, CultureInfo.InvariantCulture, out int pid) || pid <= 0)
                throw new FormatException($"{ProcessVariable}='{processId}' is not a process id");
            if (pid != ownProcessId) return null; // meant for another process (a parent that did not unset it)
        }
        if (!ulong.TryParse(microseconds, NumberStyles.None, CultureInfo.InvariantCulture, out ulong usec) || usec == 0)
            throw new FormatException($"{TimeoutVariable}='{microseconds}' is not a positive number of microseconds");
        // TimeSpan counts 100 ns ticks; a timeout beyond its range means "never" in practice.
        var timeout = usec >= (ulong)(TimeSpan.MaxValue.Ticks / 10) ? TimeSpan.MaxValue : TimeSpan.FromTicks((long)usec * 10);
        return new SystemdWatchdog(timeout);
    }
}
