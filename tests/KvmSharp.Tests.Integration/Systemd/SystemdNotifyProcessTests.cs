using System.Diagnostics;
using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Systemd;

/// <summary>
/// The real `kvmsharp run` speaking sd_notify(3) to a datagram socket the test binds, as systemd would with
/// Type=notify and WatchdogSec=: READY=1 once the VM runs, STATUS= lines, WATCHDOG=1 at half WATCHDOG_USEC,
/// STOPPING=1 and the reason it ended on SIGTERM.
/// </summary>
public sealed class SystemdNotifyProcessTests
{
    private static readonly TimeSpan WatchdogTimeout = TimeSpan.FromSeconds(2); // a ping a second
    private static readonly TimeSpan Window = TimeSpan.FromSeconds(6);
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    [KvmFact]
    public void Ready_status_watchdog_pings_and_stopping_reach_the_notify_socket()
    {
        using var listener = new NotifyListener();
        // A guest that runs until stopped, without exits (a few seconds of one CPU: the watchdog needs a running VM).
        using var image = new FlatImageFile("notify", a =>
        {
            var spin = a.CreateLabel();
            a.Label(ref spin);
            a.pause();
            a.jmp(spin);
        });
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(typeof(KvmSharp.Program).Assembly.Location);
        foreach (string argument in new[] { "run", "--image", image.Path, "--entry", image.Entry }) start.ArgumentList.Add(argument);
        start.Environment["NOTIFY_SOCKET"] = listener.Address;
        start.Environment["WATCHDOG_USEC"] = ((long)WatchdogTimeout.TotalMicroseconds).ToString(System.Globalization.CultureInfo.InvariantCulture);

        using var process = Process.Start(start)!;
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        TimeSpan windowStart, windowEnd;
        try
        {
            Assert.True(listener.WaitFor(a => a == "READY=1", Bound), $"no READY=1:\n{listener.Describe()}");
            windowStart = listener.Now;
            Thread.Sleep(Window);
            windowEnd = listener.Now;

            Assert.Equal(0, SendSignal(process.Id, Sigterm));
            Assert.True(process.WaitForExit(Bound), $"kvmsharp did not stop on SIGTERM:\n{listener.Describe()}");
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }

        string why = $"exit {process.ExitCode}\nnotifications:\n{listener.Describe()}\nstderr:\n{stderr.Result}";
        Assert.True(process.ExitCode == 0, why);
        var sent = listener.Assignments;
        var names = sent.Select(a => a.Assignment).ToList();

        // READY=1 after the VM was booting and running, never before.
        int ready = names.IndexOf("READY=1");
        Assert.True(names.FindIndex(a => a.StartsWith("STATUS=booting", StringComparison.Ordinal)) is var booting && booting >= 0 && booting < ready, why);
        Assert.True(names.FindIndex(a => a.StartsWith("STATUS=running", StringComparison.Ordinal)) is var running && running >= 0 && running <= ready + 1, why);
        Assert.Single(names, a => a == "READY=1");

        // WATCHDOG=1 every WATCHDOG_USEC/2: 6 in a 6 s window; bounds leave room for a loaded host's timer slips.
        int expected = (int)(Window / (WatchdogTimeout / 2));
        int pings = sent.Count(a => a.Assignment == "WATCHDOG=1" && a.At >= windowStart && a.At < windowEnd);
        Assert.True(pings >= expected / 2 && pings <= expected + 2, $"{pings} pings in {Window.TotalSeconds} s, expected about {expected}\n{why}");

        // SIGTERM: STOPPING=1, then the reason it ended as the last status.
        int stopping = names.IndexOf("STOPPING=1");
        Assert.True(stopping > ready, why);
        Assert.StartsWith("STATUS=ended: stopped", names.Last(a => a.StartsWith("STATUS=", StringComparison.Ordinal)));
    }

    private const int Sigterm = 15;

    private static int SendSignal(int pid, int signal) => Tmds.Linux.LibC.kill(pid, signal);
}
