using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace KvmSharp.Hosting;

/// <summary>
/// Closed registrations of the options and loggers the host resolves while it starts. The container would
/// close its open generics (IOptionsMonitor&lt;&gt;, Logger&lt;&gt;, ...) at run time, and under NativeAOT each such
/// type is built by the runtime's type loader: most of the host's start-up. Named here, they are compiled ahead.
/// Same lifetimes and behaviour as the open registrations they stand in for.
/// </summary>
internal static class PrecompiledHostServices
{
    public static void Add(IServiceCollection services)
    {
        AddOptions<HostOptions>(services);
        AddOptions<ConsoleLifetimeOptions>(services);
        AddOptions<LoggerFilterOptions>(services);
        AddOptions<LoggerFactoryOptions>(services);
        AddOptions<ConsoleLoggerOptions>(services);
        AddOptions<ConsoleFormatterOptions>(services);
        AddOptions<SimpleConsoleFormatterOptions>(services);
        AddOptions<JsonConsoleFormatterOptions>(services);
        services.AddSingleton<ILogger<VmService>, Logger<VmService>>();
    }

    private static void AddOptions<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicParameterlessConstructor)] T>(IServiceCollection services)
        where T : class
    {
        services.AddSingleton<IOptions<T>, OptionsManager<T>>();
        services.AddSingleton<IOptionsMonitor<T>, OptionsMonitor<T>>();
        services.AddSingleton<IOptionsMonitorCache<T>, OptionsCache<T>>();
        services.AddTransient<IOptionsFactory<T>, OptionsFactory<T>>();
    }
}
