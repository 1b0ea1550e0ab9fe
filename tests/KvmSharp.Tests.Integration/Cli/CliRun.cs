using System.Diagnostics;
using Xunit;

namespace KvmSharp.Tests.Integration.Cli;

/// <summary>
/// Runs the built `kvmsharp` as a user would (like <see cref="Infrastructure.KvmSharpProcess"/>), with a
/// chosen working directory and environment, and checks the shape of a refusal: the exit status and
/// exactly one stderr line starting "kvmsharp: ", with no stack trace.
/// </summary>
internal static class CliRun
{
    public sealed record Result(int ExitCode, string StandardOutput, string StandardError)
    {
        public string[] ErrorLines => StandardError.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        public override string ToString() => $"exit {ExitCode}\nstdout: {StandardOutput}\nstderr: {StandardError}";
    }

    public static Result Run(IEnumerable<string> arguments, IDictionary<string, string?>? environment = null, string? workingDirectory = null)
    {
        string dll = typeof(KvmSharp.Program).Assembly.Location;
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Path.GetTempPath(),
        };
        start.ArgumentList.Add(dll);
        foreach (string argument in arguments) start.ArgumentList.Add(argument);
        // Settings the test process happens to carry must not leak into the case under test.
        foreach (string key in start.Environment.Keys.Where(k => k.StartsWith("KVMSHARP__", StringComparison.OrdinalIgnoreCase)).ToList())
            start.Environment.Remove(key);
        foreach (var (key, value) in environment ?? new Dictionary<string, string?>()) start.Environment[key] = value;

        using var process = Process.Start(start)!;
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"kvmsharp {string.Join(' ', arguments)} did not finish");
        }
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Run, and assert a refusal: <paramref name="status"/>, one stderr line naming what was wrong, no stack trace, nothing on stdout.</summary>
    public static string Refused(int status, IEnumerable<string> arguments, IDictionary<string, string?>? environment = null, string? workingDirectory = null)
    {
        var result = Run(arguments, environment, workingDirectory);
        Assert.True(result.ExitCode == status, $"expected exit {status}: {result}");
        var line = Assert.Single(result.ErrorLines);
        Assert.StartsWith("kvmsharp: ", line, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", result.StandardError, StringComparison.Ordinal);
        Assert.Equal("", result.StandardOutput);
        return line;
    }
}
