using KvmSharp.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace KvmSharp.Systemd;

/// <summary>
/// The host's systemd integration: <see cref="SystemdNotifyService"/> whenever NOTIFY_SOCKET is set (sd_notify(3)'s
/// rule, not only under a parent named systemd), and journal-style log lines (priority prefixes) under systemd.
/// Stands in for Microsoft.Extensions.Hosting.Systemd's AddSystemd, whose lifetime says READY=1 when the host has
/// started, whatever the VM is doing.
/// </summary>
public static class SystemdNotifications
{
    /// <summary>Register the notifier (when NOTIFY_SOCKET is set) and the journal log format (under systemd).</summary>
    /// <param name="readiness">When READY=1 goes out: <see cref="SystemdReadiness.WhenHostStarts"/> for --wait-for-start.</param>
    /// <param name="active">The VM the notifier follows; the container's <see cref="ActiveVm"/> when null. Without one, READY=1 comes when the host has started.</param>
    /// <exception cref="ArgumentException">NOTIFY_SOCKET, WATCHDOG_USEC or WATCHDOG_PID hold something unusable (the message names it).</exception>
    public static void Add(IServiceCollection services, SystemdReadiness readiness, ActiveVm? active = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        if (SystemdHelpers.IsSystemdService())
            services.Configure<ConsoleLoggerOptions>(options => options.FormatterName = ConsoleFormatterNames.Systemd);
        var socket = SystemdNotifySocket.FromEnvironment();
        if (socket is null) return;
        SystemdWatchdog? watchdog;
        try
        {
            watchdog = SystemdWatchdog.FromEnvironment();
        }
        catch (FormatException e)
        {
            socket.Dispose();
            throw new ArgumentException(e.Message, e);
        }
        services.AddSingleton(socket);
        services.AddSingleton(services => new SystemdNotifyService(socket, watchdog, readiness,
            active ?? services.GetService<ActiveVm>(), services.GetRequiredService<IHostApplicationLifetime>(),
            services.GetRequiredService<ILogger<SystemdNotifyService>>()));
        services.AddHostedService(services => services.GetRequiredService<SystemdNotifyService>());
        services.AddSingleton<ILogger<SystemdNotifyService>, Logger<SystemdNotifyService>>();
    }
}
