using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace KvmSharp.Api;

/// <summary>
/// `kvmsharp ctl --api-sock PATH ACTION`: the control API's client, over the Unix socket. Exit 0 when the API did
/// it, 2 for bad usage (an unknown action), 70 when the API refused (its fault_message is printed) or cannot be reached.
/// </summary>
public static class CtlCommand
{
    public const int BadUsage = Program.InvalidSettings, Failure = Program.HostFailure;

    public static readonly string[] Actions = ["state", "pause", "resume", "ctrl-alt-del", "stop", "start", "metrics", "events"];

    public const string ActionsHelp = "state (prints Created|Running|Paused|Stopped|Failed), pause, resume, ctrl-alt-del, stop, " +
                                      "start (InstanceStart, after --wait-for-start), metrics (Prometheus text), events (JSON lines until the VM ends)";

    public static async Task<int> RunAsync(string socketPath, string action, TextWriter output, TextWriter error)
    {
        var request = action switch
        {
            "state" => Request(HttpMethod.Get, "/"),
            "pause" => Request(HttpMethod.Patch, "/vm", """{"state":"Paused"}"""),
            "resume" => Request(HttpMethod.Patch, "/vm", """{"state":"Resumed"}"""),
            "ctrl-alt-del" => Request(HttpMethod.Put, "/actions", """{"action_type":"SendCtrlAltDel"}"""),
            "stop" => Request(HttpMethod.Put, "/actions", """{"action_type":"Stop"}"""),
            "start" => Request(HttpMethod.Put, "/actions", """{"action_type":"InstanceStart"}"""),
            "metrics" => Request(HttpMethod.Get, "/metrics"),
            "events" => Request(HttpMethod.Get, "/events"),
            _ => null,
        };
        if (request is null)
        {
            await error.WriteLineAsync($"kvmsharp: ctl: unknown action '{action}'; give one of {string.Join(", ", Actions)}");
            return BadUsage;
        }

        using var client = CreateClient(socketPath);
        HttpResponseMessage response;
        try
        {
            response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        }
        catch (HttpRequestException e)
        {
            await error.WriteLineAsync($"kvmsharp: ctl {action}: cannot reach the API at {socketPath}: {(File.Exists(socketPath) ? Reason(e) : "there is no such file")} (is kvmsharp running with --api-sock {socketPath}?)");
            return Failure;
        }
        using (response)
        {
            if (!response.IsSuccessStatusCode)
            {
                string fault = await FaultMessage(response);
                await error.WriteLineAsync($"kvmsharp: ctl {action}: the API refused ({(int)response.StatusCode}): {fault}");
                return Failure;
            }
            switch (action)
            {
                case "state":
                    await using (var body = await response.Content.ReadAsStreamAsync())
                    {
                        var info = await JsonSerializer.DeserializeAsync(body, ApiJsonContext.Relaxed.InstanceInfo);
                        await output.WriteLineAsync(info?.State ?? "unknown");
                    }
                    break;
                case "metrics":
                    await output.WriteAsync(await response.Content.ReadAsStringAsync());
                    break;
                case "events":
                    await CopyLines(response, output);
                    break;
            }
            await output.FlushAsync();
            return 0;
        }
    }

    private static HttpRequestMessage Request(HttpMethod method, string path, string? json = null) => new(method, path)
    {
        Content = json is null ? null : new StringContent(json, Encoding.UTF8, "application/json"),
    };

    /// <summary>An HttpClient whose every connection is the Unix socket at <paramref name="socketPath"/>.</summary>
    public static HttpClient CreateClient(string socketPath)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, cancellation) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellation);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        return new HttpClient(handler) { BaseAddress = new Uri("http://localhost"), Timeout = Timeout.InfiniteTimeSpan };
    }

    private static string Reason(HttpRequestException e) => e.InnerException switch
    {
        SocketException { SocketErrorCode: SocketError.ConnectionRefused } => "connection refused (nobody listens on it)",
        { } inner => inner.Message,
        null => e.Message,
    };

    private static async Task<string> FaultMessage(HttpResponseMessage response)
    {
        string text = await response.Content.ReadAsStringAsync();
        try
        {
            if (JsonSerializer.Deserialize(text, ApiJsonContext.Relaxed.Fault) is { } fault) return fault.FaultMessage;
        }
        catch (JsonException)
        {
        }
        return text.Length == 0 ? response.ReasonPhrase ?? response.StatusCode.ToString() : text.Trim();
    }

    private static async Task CopyLines(HttpResponseMessage response, TextWriter output)
    {
        await using var body = await response.Content.ReadAsStreamAsync();
        using var reader = new StreamReader(body);
        try
        {
            while (await reader.ReadLineAsync() is { } line)
            {
                await output.WriteLineAsync(line);
                await output.FlushAsync();
            }
        }
        catch (Exception e) when (e is IOException or HttpRequestException)
        {
            // The VMM ended and closed the stream: so do the events.
        }
    }
}
