using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using System.Threading.Channels;
using KvmSharp.Cli;
using KvmSharp.Hosting;
using KvmSharp.Vmm.Lifecycle;
using KvmSharp.Vmm.Statistics;
using Microsoft.AspNetCore.Http;

namespace KvmSharp.Api;

/// <summary>
/// What the API's routes do (<see cref="ApiRoute.All"/>): read and configure the VM, act on its controller
/// (<see cref="ActiveVm"/>), hold the API's own pause lease. Refusals are <see cref="Fault"/>s: 400 a bad request,
/// 404 no such thing, 409 not in this state, 500 the VMM failed.
/// </summary>
public sealed class VmApi
{
    public const string PauseHolder = "api";

    private readonly ActiveVm _active;
    private readonly PreBootConfiguration? _preBoot;
    private readonly object _gate = new();
    private ValidatedRunOptions? _running;
    private IVmController? _last;
    private IPauseLease? _lease;

    /// <param name="options">What runs when the VM was started by the command line (no --wait-for-start).</param>
    /// <param name="preBoot">--wait-for-start: the configuration the API builds until InstanceStart.</param>
    public VmApi(ActiveVm active, ValidatedRunOptions? options, PreBootConfiguration? preBoot)
    {
        _active = active;
        _preBoot = preBoot;
        _running = preBoot is null ? options : null;
        _last = active.Current;
        active.Attached += controller =>
        {
            lock (_gate)
            {
                _last = controller;
                // A lease is one VM's: a rebooted VM starts unpaused.
                _lease = null;
                if (_preBoot is { IsStarted: true } started && _running is null) _running = started.Started.Result;
            }
        };
    }

    public static string Version { get; } =
        typeof(VmApi).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    private IVmController? Controller => _active.Current ?? Volatile.Read(ref _last);

    public static Task Fault(HttpContext context, int status, string message) =>
        Json(context, new Fault(message), ApiJsonContext.Relaxed.Fault, status);

    public static async Task Json<T>(HttpContext context, T value, JsonTypeInfo<T> type, int status = StatusCodes.Status200OK)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(context.Response.Body, value, type, context.RequestAborted);
    }

    private static Task NoContent(HttpContext context)
    {
        context.Response.StatusCode = StatusCodes.Status204NoContent;
        return Task.CompletedTask;
    }

    /// <summary>The body as <typeparamref name="T"/>, or null after answering 400 with the parser's reason.</summary>
    private static async Task<T?> ReadBody<T>(HttpContext context, JsonTypeInfo<T> type) where T : class
    {
        try
        {
            var body = await JsonSerializer.DeserializeAsync(context.Request.Body, type, context.RequestAborted);
            if (body is not null) return body;
            await Fault(context, 400, "the request needs a JSON object body");
        }
        catch (JsonException e)
        {
            await Fault(context, 400, $"invalid JSON body: {e.Message}");
        }
        return null;
    }

    public Task GetInstanceInfo(HttpContext context)
    {
        var controller = Controller;
        string state = controller?.State.ToString() ?? nameof(VmState.Created);
        string id = controller?.Id ?? $"kvmsharp-{Environment.ProcessId}";
        return Json(context, new InstanceInfo(id, Version, state), ApiJsonContext.Relaxed.InstanceInfo);
    }

    private ValidatedRunOptions? Effective(out string? problem)
    {
        problem = null;
        lock (_gate)
        {
            if (_running is not null) return _running;
        }
        if (_preBoot is { IsStarted: true }) return _preBoot.Started.Result;
        return _preBoot?.Current(out problem);
    }

    public Task GetVmConfig(HttpContext context)
    {
        var options = Effective(out string? problem);
        return options is null
            ? Fault(context, 400, $"the configuration is not complete or not valid yet: {problem}")
            : Json(context, VmDefinition.Describe(options), ApiJsonContext.Relaxed.VmConfigDocument);
    }

    public Task GetMachineConfig(HttpContext context)
    {
        var options = Effective(out string? problem);
        return options is null
            ? Fault(context, 400, $"the configuration is not complete or not valid yet: {problem}")
            : Json(context, VmDefinition.Describe(options).MachineConfig!, ApiJsonContext.Relaxed.MachineConfig);
    }

    // Configuration before InstanceStart (--wait-for-start); afterwards, and without it, the VM is already built.
    private async Task Configure<T>(HttpContext context, JsonTypeInfo<T> type, Func<T, string?> check, Func<T, Func<VmDefinition, VmDefinition>> change, params RunSetting[] touched)
        where T : class
    {
        if (_preBoot is null || _preBoot.IsStarted)
        {
            await Fault(context, 400, _preBoot is null
                ? "the VM was started by the command line; pre-boot configuration needs --wait-for-start"
                : "the VM has started; this can only be configured before InstanceStart");
            return;
        }
        if (await ReadBody(context, type) is not { } body) return;
        if (check(body) is { } bad)
        {
            await Fault(context, 400, bad);
            return;
        }
        if (_preBoot.TryChange(change(body), touched) is { } refused)
        {
            await Fault(context, 400, refused);
            return;
        }
        await NoContent(context);
    }

    public Task PutMachineConfig(HttpContext context) => Configure(context, ApiJsonContext.Relaxed.MachineConfig, VmDefinition.Check,
        body => definition => definition with { Machine = body }, RunSetting.Memory, RunSetting.Cpus, RunSetting.ForceMemory);

    public Task PutBootSource(HttpContext context) => Configure(context, ApiJsonContext.Relaxed.BootSource, VmDefinition.Check,
        body => definition => definition with { Boot = body }, RunSetting.Kernel, RunSetting.Initrd, RunSetting.Cmdline);

    public Task PutDrive(HttpContext context)
    {
        string id = (string)context.Request.RouteValues["drive_id"]!;
        return Configure(context, ApiJsonContext.Relaxed.Drive, body => VmDefinition.Check(body, id),
            body => definition => definition.WithDrive(body), RunSetting.Drive);
    }

    public async Task PatchDrive(HttpContext context)
    {
        string id = (string)context.Request.RouteValues["drive_id"]!;
        if (await ReadBody(context, ApiJsonContext.Relaxed.PartialDrive) is not { } body) return;
        if (body.DriveId is not null && body.DriveId != id)
        {
            await Fault(context, 400, $"drive_id '{body.DriveId}' differs from the path's '{id}'");
            return;
        }
        if (string.IsNullOrWhiteSpace(body.PathOnHost))
        {
            await Fault(context, 400, "PATCH /drives/{drive_id} needs path_on_host (the new backing file)");
            return;
        }
        var options = Effective(out _);
        var drives = options?.Drives ?? [];
        if (!drives.Select((spec, i) => VmDefinition.DriveId(spec, i)).Contains(id))
        {
            await Fault(context, 404, $"there is no drive '{id}'; drives: {(drives.Count == 0 ? "none" : string.Join(", ", drives.Select((spec, i) => VmDefinition.DriveId(spec, i))))}");
            return;
        }
        if (Controller is not { State: VmState.Running or VmState.Paused })
        {
            await Fault(context, 409, $"the VM is {Controller?.State.ToString() ?? nameof(VmState.Created)}; a drive's file is swapped on a running VM (before InstanceStart, PUT the drive again)");
            return;
        }
        await Fault(context, 400, "swapping a running drive's backing file is not supported yet");
    }

    public async Task PutNetworkInterface(HttpContext context) => await Fault(context, 400, VmDefinition.NetworkNotSupported);

    public async Task PutVsock(HttpContext context) => await Fault(context, 400, VmDefinition.VsockNotSupported);

    public async Task PutAction(HttpContext context)
    {
        if (await ReadBody(context, ApiJsonContext.Relaxed.InstanceActionInfo) is not { } body) return;
        switch (body.ActionType)
        {
            case "InstanceStart":
                if (_preBoot is null)
                {
                    await Fault(context, 409, "the VM was started by the command line (no --wait-for-start)");
                    return;
                }
                if (_preBoot.Start(out bool already) is { } refused)
                {
                    await Fault(context, already ? 409 : 400, refused);
                    return;
                }
                await NoContent(context);
                return;
            case "SendCtrlAltDel":
                await OnController(context, "Ctrl-Alt-Del", c => c.SendCtrlAltDelAsync(context.RequestAborted));
                return;
            case "Stop":
                if (_preBoot is { IsStarted: false })
                {
                    _preBoot.Cancel();
                    await NoContent(context);
                    return;
                }
                await OnController(context, "stop", c => c.StopAsync("stopped through the API", context.RequestAborted));
                return;
            default:
                await Fault(context, 400, $"action_type '{body.ActionType}': give InstanceStart, SendCtrlAltDel or Stop");
                return;
        }
    }

    private async Task OnController(HttpContext context, string what, Func<IVmController, Task> act)
    {
        if (_active.Current is not { } controller)
        {
            await Fault(context, 409, $"no VM is running ({what} needs one){(_preBoot is { IsStarted: false } ? "; start it with InstanceStart" : "")}");
            return;
        }
        try
        {
            await act(controller);
        }
        catch (VmTransitionException e)
        {
            await Fault(context, 409, e.Message);
            return;
        }
        await NoContent(context);
    }

    public async Task PatchVm(HttpContext context)
    {
        if (await ReadBody(context, ApiJsonContext.Relaxed.VmStateRequest) is not { } body) return;
        if (body.State is not ("Paused" or "Resumed"))
        {
            await Fault(context, 400, $"state '{body.State}': give Paused or Resumed");
            return;
        }
        if (_active.Current is not { } controller)
        {
            await Fault(context, 409, "no VM is running");
            return;
        }
        if (body.State == "Paused")
        {
            bool alreadyPaused;
            lock (_gate) alreadyPaused = _lease is not null;
            if (alreadyPaused)
            {
                await Fault(context, 409, "the VM is already paused by the API");
                return;
            }
            IPauseLease lease;
            try
            {
                lease = await controller.PauseAsync(PauseHolder, context.RequestAborted);
            }
            catch (VmTransitionException e)
            {
                await Fault(context, 409, e.Message);
                return;
            }
            catch (TimeoutException e)
            {
                await Fault(context, 500, e.Message);
                return;
            }
            lock (_gate)
            {
                if (_lease is null && _active.Current == controller)
                {
                    _lease = lease;
                    lease = null!;
                }
            }
            if (lease is not null)
            {
                // Another request paused meanwhile (or the VM changed): one API lease at a time.
                lease.Dispose();
                await Fault(context, 409, "the VM is already paused by the API");
                return;
            }
            await NoContent(context);
            return;
        }
        IPauseLease? held;
        lock (_gate)
        {
            held = _lease;
            _lease = null;
        }
        if (held is null)
        {
            var state = controller.State;
            await Fault(context, 409, state == VmState.Paused
                ? "the VM is paused by another holder (a page-track carve, a tracker), not by the API: it resumes when that one is done"
                : $"the VM is {state}, not paused by the API: nothing to resume");
            return;
        }
        held.Dispose();
        await NoContent(context);
    }

    public async Task GetMetrics(HttpContext context)
    {
        var text = new StringBuilder();
        var controller = Controller;
        PrometheusText.WriteGauge(text, "kvmsharp_vm_state", "1 for the state the VM is in",
            Enum.GetValues<VmState>().Select(s => (new[] { new KeyValuePair<string, object?>("state", s.ToString()) },
                (controller?.State ?? VmState.Created) == s ? 1.0 : 0.0)));
        if (controller is not null) PrometheusText.Write(controller.Machine.Metrics.Meter, text);
        context.Response.StatusCode = 200;
        context.Response.ContentType = PrometheusText.ContentType;
        await context.Response.WriteAsync(text.ToString(), context.RequestAborted);
    }

    /// <summary>Every event from now on, one JSON object a line, across reboots, until the client or the VMM goes.</summary>
    public async Task GetEvents(HttpContext context, CancellationToken stopping)
    {
        var lines = Channel.CreateUnbounded<EventLine>(new UnboundedChannelOptions { SingleReader = true });
        IDisposable? subscription = null;
        var subscriptionGate = new object();
        void Follow(IVmController controller)
        {
            lock (subscriptionGate)
            {
                subscription?.Dispose();
                subscription = controller.Subscribe(e => lines.Writer.TryWrite(new EventLine(e.Sequence, e.Time, controller.Id, e.Kind, e.Detail)));
            }
        }
        _active.Attached += Follow;
        if (_active.Current is { } current) Follow(current);
        context.Response.StatusCode = 200;
        context.Response.ContentType = "application/x-ndjson";
        using var ended = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, stopping);
        try
        {
            await context.Response.Body.FlushAsync(ended.Token);
            await foreach (var line in lines.Reader.ReadAllAsync(ended.Token))
            {
                await JsonSerializer.SerializeAsync(context.Response.Body, line, ApiJsonContext.Relaxed.EventLine, ended.Token);
                await context.Response.Body.WriteAsync("\n"u8.ToArray(), ended.Token);
                await context.Response.Body.FlushAsync(ended.Token);
            }
        }
        catch (OperationCanceledException)
        {
            // The client went away or the VMM stops: the stream ends.
        }
        finally
        {
            _active.Attached -= Follow;
            lock (subscriptionGate) subscription?.Dispose();
        }
    }
}
