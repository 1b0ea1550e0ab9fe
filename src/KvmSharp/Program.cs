using KvmSharp.Caps;
using KvmSharp.Cli;
using KvmSharp.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace KvmSharp;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        CommandLine commandLine;
        try
        {
            commandLine = CommandLine.Parse(args);
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"kvmsharp: {e.Message}");
            return 2;
        }

        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
        {
            Args = [],
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Configuration.AddInMemoryCollection(commandLine.Settings);
        // The serial console owns stdout; every log line goes to stderr.
        builder.Logging.AddConsole(console => console.LogToStandardErrorThreshold = LogLevel.Trace);
        builder.Logging.AddSimpleConsole(console => console.SingleLine = true);
        builder.Services.AddSystemd();

        var options = builder.Configuration.GetSection(RunOptions.Section).Get<RunOptions>() ?? new RunOptions();

        switch (commandLine.Verb)
        {
            case "help":
                Console.WriteLine(CommandLine.Usage);
                return 0;
            case "caps":
                return CapsCommand.Run(options.KvmDevice, Console.Out, Console.Error);
        }

        ValidatedRunOptions validated;
        try
        {
            validated = options.Validate();
        }
        catch (OptionsException e)
        {
            Console.Error.WriteLine($"kvmsharp: {e.Message}");
            return 2;
        }

        var exitCode = new ExitCodeHolder();
        builder.Services.AddSingleton(validated);
        builder.Services.AddSingleton(exitCode);
        builder.Services.AddHostedService<VmService>();
        using var host = builder.Build();
        await host.RunAsync();
        return exitCode.ExitCode;
    }
}
