using System.Diagnostics;
using System.Text;
using KvmSharp.Tests.Integration.Infrastructure;
using Tmds.Linux;
using Xunit;
using Xunit.Abstractions;

namespace KvmSharp.Tests.Integration.SerialConsole;

/// <summary>
/// A stop must never wait for the console's reader or for busy vCPUs: each case ends the real process with a signal
/// (or by losing its reader) and checks how it ended. The stop time is printed, not asserted.
/// </summary>
public sealed class ConsoleStopTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private const string HostStopped = "VM ended: stopped: the host is shutting down (exit code 0)";

    [KvmFact]
    public void Sigterm_stops_at_once_when_nobody_reads_stdout()
    {
        using var image = EchoGuest.Chatter("chatter-unread");
        using var kvmsharp = ConsoleProcess.WithStdoutPipe("run", "--image", image.Path, "--entry", image.Entry);
        Assert.True(kvmsharp.WaitForLog("booting", Patience), kvmsharp.StandardError);
        Thread.Sleep(TimeSpan.FromSeconds(4)); // ~100 KB/s of output: the pipe (64 KiB) fills, then the sink's buffer

        var stopTime = StopWith(kvmsharp, LibC.SIGTERM);

        string stderr = kvmsharp.StandardError;
        log.WriteLine($"stop took {stopTime.TotalMilliseconds:0} ms\n{stderr}");
        Assert.Equal(0, kvmsharp.ExitCode);
        Assert.Contains(HostStopped, stderr);
    }

    [KvmFact]
    public unsafe void Sigterm_stops_at_once_with_a_fifo_serial_file_nobody_opened()
    {
        string fifo = Path.Combine(Path.GetTempPath(), $"kvmsharp-console-{Guid.NewGuid():N}.fifo");
        byte[] path = Encoding.UTF8.GetBytes(fifo + "\0");
        fixed (byte* p = path) Assert.Equal(0, LibC.mkfifo(p, 0b110_000_000));
        try
        {
            using var image = EchoGuest.Chatter("chatter-fifo");
            using var kvmsharp = ConsoleProcess.WithStdoutPipe("run", "--image", image.Path, "--entry", image.Entry, "--serial", fifo);
            Assert.True(kvmsharp.WaitForLog("booting", Patience), kvmsharp.StandardError);
            Thread.Sleep(TimeSpan.FromSeconds(1));
            Assert.False(kvmsharp.Process.HasExited, kvmsharp.StandardError);

            var stopTime = StopWith(kvmsharp, LibC.SIGTERM);

            string stderr = kvmsharp.StandardError;
            log.WriteLine($"stop took {stopTime.TotalMilliseconds:0} ms\n{stderr}");
            Assert.Equal(0, kvmsharp.ExitCode);
            Assert.Contains(HostStopped, stderr);
            Assert.Contains("bytes of guest console output were dropped", stderr); // the FIFO never had a reader
        }
        finally
        {
            File.Delete(fifo);
        }
    }

    [KvmFact]
    public void Sigterm_stops_255_spinning_vcpus_even_while_they_are_still_starting()
    {
        using var image = EchoGuest.Spin("spin-many");
        using var kvmsharp = ConsoleProcess.WithStdoutPipe("run", "--image", image.Path, "--entry", image.Entry, "--cpus", "255");
        Assert.True(kvmsharp.WaitForLog("booting", Patience), kvmsharp.StandardError);
        Thread.Sleep(TimeSpan.FromSeconds(3));
        int threads = Directory.GetDirectories($"/proc/{kvmsharp.Id}/task").Length;

        var stopTime = StopWith(kvmsharp, LibC.SIGTERM);

        string stderr = kvmsharp.StandardError;
        log.WriteLine($"stop with {threads} threads running took {stopTime.TotalMilliseconds:0} ms\n{stderr}");
        Assert.Equal(0, kvmsharp.ExitCode);
        Assert.Contains(HostStopped, stderr);
    }

    [KvmFact]
    public void When_the_stdout_reader_goes_away_the_run_ends_with_74()
    {
        using var image = EchoGuest.Chatter("chatter-head");
        using var kvmsharp = ConsoleProcess.WithStdoutPipe("run", "--image", image.Path, "--entry", image.Entry);

        // `| head -c 100`: read 100 bytes, then close the pipe.
        var first = new byte[100];
        kvmsharp.Process.StandardOutput.BaseStream.ReadExactly(first);
        kvmsharp.Process.StandardOutput.Close();
        var clock = Stopwatch.StartNew();

        Assert.True(kvmsharp.WaitForExit(Patience), $"the guest ran on without a reader\n{kvmsharp.StandardError}");
        string stderr = kvmsharp.StandardError;
        log.WriteLine($"ended {clock.ElapsedMilliseconds} ms after the reader left\n{stderr}");
        Assert.Equal(new string('A', 100), Encoding.ASCII.GetString(first));
        Assert.Equal(74, kvmsharp.ExitCode);
        Assert.Contains("VM ended: the reader of the serial console (stdout) went away (EPIPE)", stderr);
    }

    [KvmFact]
    public void Sighup_is_a_clean_stop_that_leaves_no_runtime_files_behind()
    {
        using var image = EchoGuest.Spin("spin-hup");
        using var kvmsharp = ConsoleProcess.WithStdoutPipe("run", "--image", image.Path, "--entry", image.Entry);
        Assert.True(kvmsharp.WaitForLog("booting", Patience), kvmsharp.StandardError);
        int pid = kvmsharp.Id;

        var stopTime = StopWith(kvmsharp, LibC.SIGHUP);

        string stderr = kvmsharp.StandardError;
        log.WriteLine($"stop took {stopTime.TotalMilliseconds:0} ms\n{stderr}");
        Assert.Equal(0, kvmsharp.ExitCode);
        Assert.Contains(HostStopped, stderr);
        Assert.Empty(Directory.GetFiles(Path.GetTempPath(), $"clr-debug-pipe-{pid}-*"));
        Assert.Empty(Directory.GetFiles(Path.GetTempPath(), $"dotnet-diagnostic-{pid}-*"));
    }

    private static TimeSpan StopWith(ConsoleProcess kvmsharp, int signal)
    {
        var clock = Stopwatch.StartNew();
        kvmsharp.Signal(signal);
        Assert.True(kvmsharp.WaitForExit(Patience), $"kvmsharp did not stop on signal {signal}\n{kvmsharp.StandardError}");
        return clock.Elapsed;
    }
}
