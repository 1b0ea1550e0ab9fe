using System.Text;
using KvmSharp.Tests.Integration.Infrastructure;
using Tmds.Linux;
using Xunit;

namespace KvmSharp.Tests.Integration.SerialConsole;

/// <summary>stdin that is not a terminal: bytes reach the guest as they come, untouched, and EOF only ends input.</summary>
public sealed class PipedInputTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [KvmFact]
    public void Piped_bytes_reach_the_guest_without_a_newline_and_eof_leaves_the_vm_running()
    {
        using var image = EchoGuest.Echo("echo-pipe");
        using var kvmsharp = ConsoleProcess.WithPipes(closeStdin: false, "run", "--image", image.Path, "--entry", image.Entry);
        var output = new StringBuilder();
        var reader = new Thread(() =>
        {
            var buffer = new char[256];
            int read;
            while ((read = kvmsharp.Process.StandardOutput.Read(buffer, 0, buffer.Length)) > 0)
                lock (output) output.Append(buffer, 0, read);
        }) { IsBackground = true };
        reader.Start();
        bool Shows(string text) => SpinWait.SpinUntil(() => { lock (output) return output.ToString().Contains(text, StringComparison.Ordinal); }, Patience);
        Assert.True(Shows(EchoGuest.Ready), kvmsharp.StandardError);

        // Ctrl-A x is just two bytes here: no escape keys on a pipe.
        var stdin = kvmsharp.Process.StandardInput.BaseStream;
        stdin.Write([(byte)'x', (byte)'y', 0x01, (byte)'x']);
        stdin.Flush();
        Assert.True(Shows("[78][79][01][78]"), $"{output}\n{kvmsharp.StandardError}");

        kvmsharp.Process.StandardInput.Close(); // EOF
        Thread.Sleep(500);
        Assert.False(kvmsharp.Process.HasExited, $"EOF on stdin ended the run\n{kvmsharp.StandardError}");

        kvmsharp.Signal(LibC.SIGTERM);
        Assert.True(kvmsharp.WaitForExit(Patience), kvmsharp.StandardError);
        Assert.Equal(0, kvmsharp.ExitCode);
        Assert.Contains("VM ended: stopped: the host is shutting down (exit code 0)", kvmsharp.StandardError);
    }
}
