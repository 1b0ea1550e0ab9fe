using System.Net.Sockets;
using KvmSharp.Cli;
using KvmSharp.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace KvmSharp.Api;

/// <summary>
/// The control API: Kestrel minimal APIs on a Unix socket (HTTP/1.1, source-generated JSON), built only when
/// --api-sock (or systemd's socket) asks for it and started after the VM, so a run without it pays nothing.
/// The socket is bound (0600) by <see cref="Prepare"/> before the VM starts, so a bad path is exit 2 and nothing ran.
/// </summary>
public sealed class ApiServer : IAsyncDisposable
{
    private static readonly TimeSpan ShutdownTimeout = TimeSpan.FromSeconds(2);

    private readonly ApiSettings.Endpoint _endpoint;
    private readonly VmApi _api;
    private Socket? _bound;
    private WebApplication? _app;

    private ApiServer(ApiSettings.Endpoint endpoint, VmApi api, Socket? bound)
    {
        _endpoint = endpoint;
        _api = api;
        _bound = bound;
    }

    /// <summary>With --wait-for-start, what the API configures (the host boots it at InstanceStart); else null.</summary>
    public PreBootConfiguration? PreBoot { get; private init; }

    /// <summary>Bind the socket now (refusals are exit 2), serve later; null when no API was asked for.</summary>
    /// <param name="rebind">The settings' options bound afresh, for --wait-for-start's configuration.</param>
    public static ApiServer? Prepare(ValidatedRunOptions options, ActiveVm active, Func<RunOptions> rebind)
    {
        if (options.Api is not { } endpoint) return null;
        var preBoot = endpoint.WaitForStart ? new PreBootConfiguration(rebind, o => o.Validate()) : null;
        var bound = endpoint.SystemdSocket is null ? UnixSocketFile.Bind(endpoint.SocketPath!) : null;
        return new ApiServer(endpoint, new VmApi(active, options, preBoot), bound) { PreBoot = preBoot };
    }

    /// <summary>Build and start Kestrel on the bound socket.</summary>
    public async Task StartAsync(CancellationToken cancellation = default)
    {
        _app = Build(_endpoint, _api, _bound);
        _bound = null; // Kestrel owns it now
        await _app.StartAsync(cancellation);
    }

    internal static WebApplication Build(ApiSettings.Endpoint endpoint, VmApi api, Socket? bound)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        builder.Logging.AddConsole(console => console.LogToStandardErrorThreshold = LogLevel.Trace);
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = ShutdownTimeout);
        uint ownUid = Tmds.Linux.LibC.geteuid();
        builder.WebHost.UseSockets(sockets =>
        {
            // The socket bound (and chmod-ed) before the VM started; Kestrel only listens on it.
            if (bound is not null) sockets.CreateBoundListenSocket = _ => bound;
        });
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            if (endpoint.SystemdSocket is { } fd) kestrel.ListenHandle((ulong)fd, listen => listen.Use(PeerCredentials.Middleware(ownUid)));
            else kestrel.ListenUnixSocket(Path.GetFullPath(endpoint.SocketPath!), listen => listen.Use(PeerCredentials.Middleware(ownUid)));
        });
        var app = builder.Build();
        MapRoutes(app, api, app.Lifetime.ApplicationStopping);
        return app;
    }

    /// <summary>Every route of <see cref="ApiRoute.All"/>, and a 404 fault for anything else.</summary>
    public static void MapRoutes(IEndpointRouteBuilder routes, VmApi api, CancellationToken stopping)
    {
        foreach (var route in ApiRoute.All)
        {
            RequestDelegate handler = (route.Method, route.Path) switch
            {
                ("GET", "/") => api.GetInstanceInfo,
                ("GET", "/vm/config") => api.GetVmConfig,
                ("GET", "/machine-config") => api.GetMachineConfig,
                ("PUT", "/machine-config") => api.PutMachineConfig,
                ("PUT", "/boot-source") => api.PutBootSource,
                ("PUT", "/drives/{drive_id}") => api.PutDrive,
                ("PATCH", "/drives/{drive_id}") => api.PatchDrive,
                ("PUT", "/network-interfaces/{iface_id}") => api.PutNetworkInterface,
                ("PUT", "/vsock") => api.PutVsock,
                ("PUT", "/actions") => api.PutAction,
                ("PATCH", "/vm") => api.PatchVm,
                ("GET", "/metrics") => api.GetMetrics,
                ("GET", "/events") => context => api.GetEvents(context, stopping),
                _ => throw new InvalidOperationException($"no handler for {route.Method} {route.Path}"),
            };
            routes.MapMethods(route.Path, [route.Method], handler);
        }
        routes.MapFallback(context => VmApi.Fault(context, 404,
            $"no route {context.Request.Method} {context.Request.Path}; the API is described in docs/api/kvmsharp.yaml"));
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            try
            {
                await _app.StopAsync();
            }
            finally
            {
                await _app.DisposeAsync();
            }
        }
        _bound?.Dispose();
        // A socket file left behind would make the next start check whether anyone listens; remove it now.
        if (_endpoint.SystemdSocket is null && _endpoint.SocketPath is { } path && UnixSocketFile.IsSocket(Path.GetFullPath(path)))
            File.Delete(Path.GetFullPath(path));
    }
}
