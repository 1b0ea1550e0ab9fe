using System.Diagnostics;
using System.Text;
using KvmSharp.Tests.Integration.Infrastructure;

namespace KvmSharp.Tests.Integration.Trackers;

/// <summary>An out-of-process tracker under test: `kvmsharp track` or the C client, its output collected as it comes.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class TrackerProcess : IDisposable
{
    private readonly Process _process;
    private readonly List<string> _lines = new();
    private readonly StringBuilder _stderr = new();
    private readonly object _gate = new();

    private TrackerProcess(ProcessStartInfo start, string name)
    {
        Name = name;
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.UseShellExecute = false;
        _process = new Process { StartInfo = start };
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_gate) _lines.Add(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_gate) _stderr.AppendLine(e.Data); };
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public string Name { get; }

    /// <summary>`kvmsharp track` (the C# reference tracker).</summary>
    public static TrackerProcess CSharp(string socket, string range, bool synchronous, params string[] extra)
    {
        var start = new ProcessStartInfo("dotnet");
        start.ArgumentList.Add(typeof(KvmSharp.Program).Assembly.Location);
        foreach (string a in new[] { "track", "--tracker-sock", socket, "--range", range }) start.ArgumentList.Add(a);
        if (synchronous) start.ArgumentList.Add("--sync");
        foreach (string a in extra) start.ArgumentList.Add(a);
        return new TrackerProcess(start, "kvmsharp track");
    }

    /// <summary>tracker_client.c, compiled once per test run.</summary>
    public static TrackerProcess C(string socket, ulong firstGfn, ulong pages, bool synchronous, params string[] extra)
    {
        var start = new ProcessStartInfo(CClient.Value);
        foreach (string a in new[] { socket, $"0x{firstGfn:x}", pages.ToString(), synchronous ? "sync" : "async" }) start.ArgumentList.Add(a);
        foreach (string a in extra) start.ArgumentList.Add(a);
        return new TrackerProcess(start, "tracker_client.c");
    }

    /// <summary>The same, run as another user through setpriv (for the SO_PEERCRED check).</summary>
    public static TrackerProcess CAsUser(uint uid, string socket, ulong firstGfn, ulong pages)
    {
        var start = new ProcessStartInfo("setpriv");
        foreach (string a in new[] { $"--reuid={uid}", $"--regid={uid}", "--clear-groups", CClient.Value, socket, $"0x{firstGfn:x}", pages.ToString(), "async" })
            start.ArgumentList.Add(a);
        return new TrackerProcess(start, $"tracker_client.c as uid {uid}");
    }

    private static readonly Lazy<string> CClient = new(() =>
    {
        string source = Path.Combine(AppContext.BaseDirectory, "Trackers", "tracker_client.c");
        string output = Path.Combine(Path.GetTempPath(), $"kvmsharp-tracker-client-{Environment.ProcessId}");
        var gcc = Process.Start(new ProcessStartInfo(GccFactAttribute.Gcc ?? "gcc", ["-O2", "-Wall", "-Wextra", "-Werror", "-o", output, source]) { RedirectStandardError = true })!;
        string errors = gcc.StandardError.ReadToEnd();
        gcc.WaitForExit();
        if (gcc.ExitCode != 0) throw new InvalidOperationException($"gcc failed on tracker_client.c: {errors}");
        // Executable by anyone: the SO_PEERCRED test runs it as another user.
        File.SetUnixFileMode(output, (UnixFileMode)0x1ED); // 0755
        return output;
    });

    public IReadOnlyList<string> Lines
    {
        get { lock (_gate) return _lines.ToList(); }
    }

    public string StandardError
    {
        get { lock (_gate) return _stderr.ToString(); }
    }

    /// <summary>Wait until its stderr shows <paramref name="text"/> (or it exits: then fail with what it said).</summary>
    public void WaitForStderr(string text, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (!StandardError.Contains(text, StringComparison.Ordinal))
        {
            if (_process.HasExited && !StandardError.Contains(text, StringComparison.Ordinal))
            {
                _process.WaitForExit();
                if (!StandardError.Contains(text, StringComparison.Ordinal))
                    throw new InvalidOperationException($"{Name} exited ({_process.ExitCode}) before saying '{text}': {StandardError}");
            }
            if (clock.Elapsed > timeout) throw new TimeoutException($"{Name} did not say '{text}' in {timeout}: {StandardError}");
            Thread.Sleep(10);
        }
    }

    /// <summary>Wait until some stdout line satisfies <paramref name="predicate"/>; false on timeout.</summary>
    public bool WaitForLine(Func<string, bool> predicate, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (Lines.Any(predicate)) return true;
            Thread.Sleep(10);
        }
        return false;
    }

    public int WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
        {
            _process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{Name} did not exit in {timeout}: {StandardError}");
        }
        _process.WaitForExit(); // the output to its end
        return _process.ExitCode;
    }

    public void Kill()
    {
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
    }

    public void Dispose()
    {
        if (!_process.HasExited) Kill();
        _process.Dispose();
    }
}
