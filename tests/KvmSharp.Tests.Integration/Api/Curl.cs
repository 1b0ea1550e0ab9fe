using System.Diagnostics;
using Xunit;

namespace KvmSharp.Tests.Integration.Api;

/// <summary>The real curl over the API's Unix socket: `curl -s --unix-socket S -X METHOD [-d BODY] http://localhost/PATH`.</summary>
internal static class Curl
{
    public sealed record Response(int Status, string Body)
    {
        public override string ToString() => $"{Status} {Body}";
    }

    /// <summary>Null when curl is here, else the exact reason the tests skip.</summary>
    public static string? Missing()
    {
        foreach (string directory in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':'))
            if (directory.Length > 0 && File.Exists(Path.Combine(directory, "curl"))) return null;
        return "curl is not on PATH (apt-get install curl; .ci/run installs it)";
    }

    public static Response Send(string socket, string method, string path, string? body = null, string? asUser = null)
    {
        var start = new ProcessStartInfo(asUser is null ? "curl" : "setpriv")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (asUser is not null)
        {
            foreach (string a in new[] { "--reuid", asUser, "--regid", asUser, "--clear-groups", "curl" }) start.ArgumentList.Add(a);
        }
        foreach (string a in new[] { "-s", "--max-time", "20", "--unix-socket", socket, "-X", method, "-w", "\n%{http_code}" }) start.ArgumentList.Add(a);
        if (body is not null)
        {
            start.ArgumentList.Add("-H");
            start.ArgumentList.Add("Content-Type: application/json");
            start.ArgumentList.Add("-d");
            start.ArgumentList.Add(body);
        }
        start.ArgumentList.Add($"http://localhost{path}");
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd();
        string error = process.StandardError.ReadToEnd();
        Assert.True(process.WaitForExit(TimeSpan.FromSeconds(30)), "curl did not finish");
        int newline = output.LastIndexOf('\n');
        Assert.True(newline >= 0, $"curl printed no status: {output} {error}");
        return new Response(int.TryParse(output[(newline + 1)..], out int status) ? status : -1, output[..newline]);
    }

    /// <summary>`curl -N` on a streaming route, in the background; its stdout so far via the returned reader.</summary>
    public static (Process Process, Func<string> Output) Stream(string socket, string path)
    {
        var start = new ProcessStartInfo("curl") { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string a in new[] { "-s", "-N", "--unix-socket", socket, $"http://localhost{path}" }) start.ArgumentList.Add(a);
        var process = Process.Start(start)!;
        var text = new System.Text.StringBuilder();
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (text) text.AppendLine(e.Data);
        };
        process.BeginOutputReadLine();
        return (process, () =>
        {
            lock (text) return text.ToString();
        });
    }
}
