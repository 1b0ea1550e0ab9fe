using System.Diagnostics;
using System.Text;
using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;

namespace KvmSharp.Tests.Integration.Api;

/// <summary>
/// The built `kvmsharp run ... --api-sock PATH` running in the background (as a user starts the daemon), with
/// <see cref="Curl"/> and <see cref="Ctl"/> to drive it as a user would: real curl --unix-socket, real `kvmsharp ctl`.
/// </summary>
internal sealed class ApiProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new(), _stderr = new();

    public ApiProcess(string socket, params string[] arguments)
    {
        Socket = socket;
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(typeof(KvmSharp.Program).Assembly.Location);
        foreach (string argument in arguments) start.ArgumentList.Add(argument);
        foreach (string key in start.Environment.Keys.Where(k => k.StartsWith("KVMSHARP__", StringComparison.OrdinalIgnoreCase)).ToList())
            start.Environment.Remove(key);
        _process = Process.Start(start)!;
        _process.OutputDataReceived += (_, e) => { lock (_stdout) _stdout.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { lock (_stderr) _stderr.AppendLine(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        _process.StandardInput.Close();
    }

    public string Socket { get; }

    public string StandardError
    {
        get
        {
            lock (_stderr) return _stderr.ToString();
        }
    }

    public string StandardOutput
    {
        get
        {
            lock (_stdout) return _stdout.ToString();
        }
    }

    /// <summary>Wait until the API answers GET / (the VMM builds its host and starts Kestrel after the VM).</summary>
    public void WaitUntilServing(TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (DateTime.UtcNow < deadline)
        {
            if (_process.HasExited) Assert.Fail($"kvmsharp exited ({_process.ExitCode}) before serving its API: {StandardError}");
            if (File.Exists(Socket) && Curl.Send(Socket, "GET", "/").Status == 200) return;
            Thread.Sleep(100);
        }
        Assert.Fail($"the API at {Socket} did not answer in time; stderr: {StandardError}");
    }

    /// <summary>Poll GET / until the state is <paramref name="state"/>.</summary>
    public void WaitForState(string state, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(20));
        string last = "";
        while (DateTime.UtcNow < deadline)
        {
            last = Curl.Send(Socket, "GET", "/").Body;
            if (last.Contains($"\"state\":\"{state}\"", StringComparison.Ordinal)) return;
            Thread.Sleep(100);
        }
        Assert.Fail($"the VM did not reach {state}; last GET /: {last}");
    }

    public int WaitForExit(TimeSpan? timeout = null)
    {
        if (!_process.WaitForExit(timeout ?? TimeSpan.FromSeconds(30)))
            Assert.Fail($"kvmsharp did not exit; stderr: {StandardError}");
        _process.WaitForExit(); // the output's end
        return _process.ExitCode;
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
        _process.Dispose();
    }

    /// <summary>`kvmsharp ctl --api-sock SOCKET ACTION`.</summary>
    public static KvmSharpProcess.Result Ctl(string socket, string action, TimeSpan? timeout = null) =>
        KvmSharpProcess.Run(["ctl", "--api-sock", socket, action], timeout: timeout);
}
