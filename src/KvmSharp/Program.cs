using System.CommandLine;
using KvmSharp.Api;
using KvmSharp.Caps;
using KvmSharp.Cli;
using KvmSharp.Hosting;
using KvmSharp.Systemd;
using KvmSharp.Vmm.Statistics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace KvmSharp;

public static class Program
{
    /// <summary>An invalid setting or command line (found before anything is created).</summary>
    public const int InvalidSettings = 2;

    /// <summary>KvmSharp or the host failed (sysexits' EX_SOFTWARE).</summary>
    public const int HostFailure = 70;

    // How long the host's build waits for the first VM to start; a few ms when idle, longer for hundreds of vCPUs.
    private static readonly TimeSpan FirstVmHeadStart = TimeSpan.FromMilliseconds(50);

    public static async Task<int> Main(string[] args)
    {
        try
        {
            return await RunAsync(args);
        }
        catch (OptionsException e)
        {
            Console.Error.WriteLine($"kvmsharp: {e.Message}");
            return InvalidSettings;
        }
        catch (Exception e)
        {
            // Last resort: one line, never a stack trace, never success.
            Console.Error.WriteLine($"kvmsharp: {ErrorMessages.OneLine(e)}");
            return HostFailure;
        }
    }

    private static async Task<int> RunAsync(string[] args)
    {
        var timeline = StartupTimeline.Process;
        timeline.Mark("runtime started");
        // exec: its own arguments (a command after --), then a run VM.
        if (args is [CommandLine.ExecVerb, ..])
            return await Exec.ExecCommand.RunAsync(args[1..], flags => RunVmAsync(Settings.Load(flags), timeline));
        var commandLine = new CommandLine();
        var parsed = commandLine.Parse(args);
        timeline.Mark("command line parsed");
        switch (parsed.Verb)
        {
            case ParsedVerb.Error:
                Console.Error.WriteLine($"kvmsharp: {parsed.Error}");
                return InvalidSettings;
            case ParsedVerb.BuiltIn:
                // --help, --version, [suggest]: System.CommandLine's own actions, without its signal handling.
                return parsed.Result.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null });
            case ParsedVerb.Help:
                if (commandLine.WriteHelp(parsed.HelpTopic, Console.Out)) return 0;
                Console.Error.WriteLine($"kvmsharp: there is no command '{parsed.HelpTopic}'; commands: run, caps, ctl, track, help");
                return InvalidSettings;
            case ParsedVerb.Track:
                return TrackCommand.Run(parsed.Track!, Console.Out, Console.Error);
        }

        if (parsed.Verb == ParsedVerb.Ctl) return await CtlCommand.RunAsync(parsed.CtlSocket!, parsed.CtlAction!, Console.Out, Console.Error);

        var settings = Settings.Load(parsed.Settings);
        timeline.Mark("settings loaded");
        if (parsed.Verb == ParsedVerb.Caps)
        {
            string device = settings.KvmDevice();
            return CapsCommand.Run(device, Console.Out, Console.Error);
        }

        return await RunVmAsync(settings, timeline);
    }

    private static async Task<int> RunVmAsync(Settings settings, StartupTimeline timeline)
    {
        ValidatedRunOptions validated;
        try
        {
            validated = settings.BindRunOptions().Validate();
            settings.CheckLogLevels();
        }
        catch (OptionsException e)
        {
            throw settings.WithOrigin(e);
        }

        timeline.Mark("options validated");
        // The first VM starts before the host is built: it needs none of it, and the host is most of the start-up.
        var exitCode = new ExitCodeHolder();
        var log = new DeferredLogger<VmService>();
        var active = new ActiveVm();
        // The API's socket is bound before the VM starts (a bad --api-sock is exit 2 with nothing run); Kestrel starts after it.
        var api = ApiServer.Prepare(validated, active, settings.BindRunOptions);
        var service = new VmService(validated, exitCode, log, active, api?.PreBoot?.Started);
        service.StartFirstVm();
        service.WaitUntilFirstVmStarted(FirstVmHeadStart);
        timeline.Mark("host build begins");

        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
        {
            DisableDefaults = true,
            Configuration = settings.Configuration,
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Logging.AddConfiguration(builder.Configuration.GetSection("Logging"));
        // The serial console owns stdout; every log line goes to stderr.
        builder.Logging.AddConsole(console => console.LogToStandardErrorThreshold = LogLevel.Trace);
        builder.Logging.AddSimpleConsole(console => console.SingleLine = true);
        // READY=1 when the VM runs; --wait-for-start (the VM waits for InstanceStart) is ready when the host (the API) has started.
        SystemdNotifications.Add(builder.Services, validated.Api?.WaitForStart == true ? SystemdReadiness.WhenHostStarts : SystemdReadiness.WhenVmRuns, active);
        PrecompiledHostServices.Add(builder.Services);
        builder.Services.AddHostedService(services =>
        {
            var lifetime = services.GetRequiredService<IHostApplicationLifetime>();
            var logger = services.GetRequiredService<ILogger<VmService>>();
            service.AttachHost(lifetime);
            // Held log entries (and the guest's output after them) go out once the host has started, as when the VM
            // was started by the started host; or as soon as it stops, should that come first.
            lifetime.ApplicationStarted.Register(() => log.Attach(logger));
            lifetime.ApplicationStopping.Register(() => log.Attach(logger));
            return service;
        });
        using var host = builder.Build();
        timeline.Mark("host built");
        await using (api)
        {
            if (api is not null) await api.StartAsync();
            await host.RunAsync();
        }
        return exitCode.ExitCode;
    }
}
