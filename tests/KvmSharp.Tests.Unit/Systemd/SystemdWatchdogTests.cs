using KvmSharp.Systemd;
using Xunit;

namespace KvmSharp.Tests.Unit.Systemd;

/// <summary>WATCHDOG_USEC and WATCHDOG_PID as sd_watchdog_enabled(3) reads them.</summary>
public sealed class SystemdWatchdogTests
{
    [Fact]
    public void The_timeout_is_in_microseconds_and_pings_come_at_half_of_it()
    {
        var watchdog = SystemdWatchdog.Parse("3000000", null, 42)!;
        Assert.Equal(TimeSpan.FromSeconds(3), watchdog.Timeout);
        Assert.Equal(TimeSpan.FromSeconds(1.5), watchdog.PingInterval);
    }

    [Fact]
    public void A_watchdog_meant_for_another_process_is_not_ours()
    {
        Assert.NotNull(SystemdWatchdog.Parse("1000000", "42", 42));
        Assert.Null(SystemdWatchdog.Parse("1000000", "43", 42));
    }

    [Fact]
    public void No_timeout_means_no_watchdog()
    {
        Assert.Null(SystemdWatchdog.Parse(null, "42", 42));
        Assert.Null(SystemdWatchdog.Parse("", null, 42));
    }

    [Theory]
    [InlineData("0", null, "WATCHDOG_USEC='0'")]
    [InlineData("-5", null, "WATCHDOG_USEC='-5'")]
    [InlineData("3s", null, "WATCHDOG_USEC='3s'")]
    [InlineData("1000000", "me", "WATCHDOG_PID='me'")]
    public void A_value_that_is_not_a_number_is_named(string usec, string? pid, string named)
    {
        var e = Assert.Throws<FormatException>(() => SystemdWatchdog.Parse(usec, pid, 42));
        Assert.Contains(named, e.Message);
    }
}
