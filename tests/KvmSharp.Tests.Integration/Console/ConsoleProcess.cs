using System.Diagnostics;
using Tmds.Linux;

namespace KvmSharp.Tests.Integration.SerialConsole;

/// <summary>
/// The real `kvmsharp` executable started for console tests: on a pseudo-terminal as its controlling terminal
/// (foreground, or as a background job of a job-control shell), or with its stdout on a pipe the test controls.
/// stderr (the logs) always goes to a file, read with <see cref="StandardError"/>.
/// </summary>
public sealed class ConsoleProcess : IDisposable
{
    private readonly Process _process;
    private readonly string _stderrPath;

    private ConsoleProcess(Process process, string stderrPath)
    {
        _process = process;
        _stderrPath = stderrPath;
    }

    public int Id => _process.Id;

    public Process Process => _process;

    public string StandardError => File.Exists(_stderrPath) ? File.ReadAllText(_stderrPath) : "";

    /// <summary>Run kvmsharp with the terminal as stdin, stdout and controlling terminal, in its foreground process group.</summary>
    public static ConsoleProcess OnTerminal(PseudoTerminal terminal, params string[] arguments) =>
        Start(arguments, terminal, "exec setsid -c \"$@\"");

    /// <summary>Run kvmsharp as `kvmsharp ... &amp;` from a job-control shell on the terminal: not in the foreground group.</summary>
    public static ConsoleProcess InBackgroundOf(PseudoTerminal terminal, params string[] arguments) =>
        Start(arguments, terminal, "exec setsid -c sh -m -c '\"$@\" & wait $!' job-shell \"$@\"");

    /// <summary>Run kvmsharp with stdout on a pipe (read it, or not, through <see cref="Process"/>), stdin empty.</summary>
    public static ConsoleProcess WithStdoutPipe(params string[] arguments) => WithPipes(closeStdin: true, arguments);

    /// <summary>Run kvmsharp with stdin and stdout on pipes the test holds (<see cref="Process"/>).</summary>
    public static ConsoleProcess WithPipes(bool closeStdin, params string[] arguments)
    {
        string stderr = Path.Combine(Path.GetTempPath(), $"kvmsharp-console-{Guid.NewGuid():N}.err");
        var start = new ProcessStartInfo("sh") { RedirectStandardOutput = true, RedirectStandardInput = true, UseShellExecute = false };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add("exec \"$@\" 2>\"$KVMSHARP_TEST_STDERR\"");
        start.ArgumentList.Add("kvmsharp");
        AddCommand(start, arguments);
        start.Environment["KVMSHARP_TEST_STDERR"] = stderr;
        var process = Process.Start(start)!;
        if (closeStdin) process.StandardInput.Close();
        return new ConsoleProcess(process, stderr);
    }

    private static ConsoleProcess Start(string[] arguments, PseudoTerminal terminal, string launch)
    {
        string stderr = Path.Combine(Path.GetTempPath(), $"kvmsharp-console-{Guid.NewGuid():N}.err");
        var start = new ProcessStartInfo("sh") { UseShellExecute = false };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add($"exec <\"$KVMSHARP_TEST_TTY\" >\"$KVMSHARP_TEST_TTY\" 2>\"$KVMSHARP_TEST_STDERR\"; {launch}");
        start.ArgumentList.Add("kvmsharp");
        AddCommand(start, arguments);
        start.Environment["KVMSHARP_TEST_TTY"] = terminal.SlavePath;
        start.Environment["KVMSHARP_TEST_STDERR"] = stderr;
        start.Environment["TERM"] = "xterm";
        return new ConsoleProcess(Process.Start(start)!, stderr);
    }

    private static void AddCommand(ProcessStartInfo start, string[] arguments)
    {
        start.ArgumentList.Add("dotnet");
        start.ArgumentList.Add(typeof(KvmSharp.Program).Assembly.Location);
        foreach (string argument in arguments) start.ArgumentList.Add(argument);
    }

    /// <summary>Wait until the logs show <paramref name="text"/>.</summary>
    public bool WaitForLog(string text, TimeSpan timeout) =>
        SpinWait.SpinUntil(() => StandardError.Contains(text, StringComparison.Ordinal) || _process.HasExited, timeout)
        && StandardError.Contains(text, StringComparison.Ordinal);

    /// <summary>Send a signal to the kvmsharp process.</summary>
    public void Signal(int signal)
    {
        if (LibC.kill(_process.Id, signal) != 0) throw new IOException($"kill({_process.Id}, {signal}) failed: errno {LibC.errno}");
    }

    /// <summary>Wait for the end; false (after killing it) if it did not end in time.</summary>
    public bool WaitForExit(TimeSpan timeout)
    {
        if (_process.WaitForExit(timeout)) return true;
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
        return false;
    }

    public int ExitCode => _process.ExitCode;

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
        _process.Dispose();
        File.Delete(_stderrPath);
    }
}
