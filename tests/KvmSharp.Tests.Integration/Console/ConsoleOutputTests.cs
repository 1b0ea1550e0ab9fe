using System.Diagnostics;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Guests;
using Xunit;

namespace KvmSharp.Tests.Integration.SerialConsole;

/// <summary>Where the console's output goes when it shares a file with the logs or has nowhere to go.</summary>
public sealed class ConsoleOutputTests
{
    [KvmFact]
    public void Stdout_and_stderr_in_one_file_keep_every_line()
    {
        string log = Path.Combine(Path.GetTempPath(), $"kvmsharp-console-{Guid.NewGuid():N}.log");
        try
        {
            var start = new ProcessStartInfo("sh") { UseShellExecute = false };
            start.ArgumentList.Add("-c");
            start.ArgumentList.Add("exec \"$@\" >\"$KVMSHARP_TEST_LOG\" 2>&1 </dev/null");
            start.ArgumentList.Add("kvmsharp");
            start.ArgumentList.Add("dotnet");
            start.ArgumentList.Add(typeof(KvmSharp.Program).Assembly.Location);
            start.ArgumentList.Add("run");
            start.Environment["KVMSHARP_TEST_LOG"] = log;
            using var process = Process.Start(start)!;
            Assert.True(process.WaitForExit(TimeSpan.FromSeconds(60)));

            string text = File.ReadAllText(log);
            Assert.Equal(0, process.ExitCode);
            // The logs (fd 2) and the console (fd 1) share one file offset: neither may overwrite the other.
            Assert.Contains("booting the built-in guest", text);
            Assert.Contains(BuiltInGuest.Banner, text);
            Assert.Contains("self-test done, exiting with status 0", text);
            Assert.Contains("VM ended: guest exited with status 0", text);
            Assert.True(text.IndexOf("booting", StringComparison.Ordinal) < text.IndexOf(BuiltInGuest.Banner, StringComparison.Ordinal), text);
        }
        finally
        {
            File.Delete(log);
        }
    }
}
