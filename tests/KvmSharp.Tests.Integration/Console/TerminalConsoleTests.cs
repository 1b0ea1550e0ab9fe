using System.Text.RegularExpressions;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Guests;
using Tmds.Linux;
using Xunit;
using Xunit.Abstractions;
using static Tmds.Linux.LibC;

namespace KvmSharp.Tests.Integration.SerialConsole;

/// <summary>The real `kvmsharp` on a real pseudo-terminal: raw mode, escape keys, background start.</summary>
public sealed class TerminalConsoleTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [KvmFact]
    public void Typed_bytes_reach_the_guest_as_typed_without_local_echo_and_ctrl_a_x_quits_restoring_the_terminal()
    {
        using var terminal = new PseudoTerminal();
        var before = terminal.Attributes;
        Assert.NotEqual(0u, before.c_lflag & (uint)ICANON); // a fresh pty starts cooked
        using var image = EchoGuest.Echo("echo-pty");
        using var kvmsharp = ConsoleProcess.OnTerminal(terminal, "run", "--image", image.Path, "--entry", image.Entry);

        Assert.True(terminal.WaitFor(EchoGuest.Ready, Patience), $"no READY\n{terminal.Output}\n{kvmsharp.StandardError}");
        Assert.True(SpinWait.SpinUntil(() => (terminal.Attributes.c_lflag & (uint)ICANON) == 0, Patience), kvmsharp.StandardError);
        var raw = terminal.Attributes;
        Assert.Equal(0u, raw.c_lflag & (uint)(ECHO | ISIG | ICANON));
        Assert.Equal(0u, raw.c_iflag & (uint)ICRNL);

        // No Enter: each byte must arrive on its own.
        terminal.Type("ab");
        Assert.True(terminal.WaitFor("[61][62]", Patience), terminal.Output);
        terminal.Type("\r");
        Assert.True(terminal.WaitFor("[0D]", Patience), terminal.Output);
        terminal.Type(0x03); // Ctrl-C belongs to the guest
        Assert.True(terminal.WaitFor("[03]", Patience), terminal.Output);
        terminal.Type(ConsoleKeys.CtrlA, ConsoleKeys.CtrlA);
        Assert.True(terminal.WaitFor("[01]", Patience), terminal.Output);
        terminal.Type(ConsoleKeys.CtrlA, (byte)'h');
        Assert.True(kvmsharp.WaitForLog("Console escape keys", Patience), kvmsharp.StandardError);
        Assert.False(kvmsharp.Process.HasExited);

        terminal.Type(ConsoleKeys.CtrlA, (byte)'x');
        Assert.True(kvmsharp.WaitForExit(Patience), "Ctrl-A x did not end kvmsharp");

        string stderr = kvmsharp.StandardError;
        log.WriteLine(stderr);
        Assert.Equal(0, kvmsharp.ExitCode);
        Assert.Contains("VM ended: stopped: quit from the console (Ctrl-A x)", stderr);
        // Everything after READY is the guest's own answers: no locally echoed "ab", no line editing.
        string afterReady = terminal.Output[(terminal.Output.IndexOf(EchoGuest.Ready, StringComparison.Ordinal) + EchoGuest.Ready.Length)..]
            .Replace(KeypadLocal, "");
        Assert.Matches(new Regex(@"^\r+\n(\[[0-9A-F]{2}\])*$"), afterReady); // the guest's \r\n, with the tty's ONLCR
        Assert.Equal("[61][62][0D][03][01]", afterReady.Trim());
        // .NET's console switches the keypad to application mode (xterm smkx "ESC[?1h"): kvmsharp switches it back
        // (rmkx "ESC[?1l") before the session and again at the end.
        string output = terminal.Output;
        int ready = output.IndexOf(EchoGuest.Ready, StringComparison.Ordinal);
        Assert.True(output.LastIndexOf(KeypadTransmit, ready, StringComparison.Ordinal) < output.LastIndexOf(KeypadLocal, ready, StringComparison.Ordinal),
            $"keypad in application mode during the session: {output.ReplaceLineEndings("|")}");
        Assert.True(output.LastIndexOf(KeypadTransmit, StringComparison.Ordinal) < output.LastIndexOf(KeypadLocal, StringComparison.Ordinal),
            "keypad left in application mode");
        AssertSameAttributes(before, terminal.Attributes);
    }

    [KvmTheory]
    [InlineData(1)]  // SIGHUP: the terminal went away
    [InlineData(2)]  // SIGINT: kill -INT (Ctrl-C itself goes to the guest)
    [InlineData(15)] // SIGTERM
    public void A_stop_signal_ends_the_run_cleanly_and_restores_the_terminal(int signal)
    {
        using var terminal = new PseudoTerminal();
        var before = terminal.Attributes;
        using var image = EchoGuest.Echo($"echo-signal-{signal}");
        using var kvmsharp = ConsoleProcess.OnTerminal(terminal, "run", "--image", image.Path, "--entry", image.Entry);
        Assert.True(terminal.WaitFor(EchoGuest.Ready, Patience), $"no READY\n{terminal.Output}\n{kvmsharp.StandardError}");
        Assert.True(SpinWait.SpinUntil(() => (terminal.Attributes.c_lflag & (uint)ICANON) == 0, Patience), kvmsharp.StandardError);

        kvmsharp.Signal(signal);

        Assert.True(kvmsharp.WaitForExit(Patience), $"signal {signal} did not end kvmsharp");
        string stderr = kvmsharp.StandardError;
        log.WriteLine(stderr);
        Assert.Equal(0, kvmsharp.ExitCode);
        Assert.Contains("VM ended: stopped: the host is shutting down (exit code 0)", stderr);
        AssertSameAttributes(before, terminal.Attributes);
    }

    [KvmFact]
    public void When_the_guest_ends_by_itself_the_terminal_is_restored()
    {
        using var terminal = new PseudoTerminal();
        var before = terminal.Attributes;

        using var kvmsharp = ConsoleProcess.OnTerminal(terminal, "run");

        Assert.True(kvmsharp.WaitForExit(Patience), kvmsharp.StandardError);
        Assert.Equal(0, kvmsharp.ExitCode);
        Assert.Contains(BuiltInGuest.Banner, terminal.Output);
        AssertSameAttributes(before, terminal.Attributes);
    }

    [KvmFact]
    public void Started_in_the_background_it_never_stops_on_the_terminal_and_leaves_it_alone()
    {
        using var terminal = new PseudoTerminal();
        var before = terminal.Attributes;

        using var kvmsharp = ConsoleProcess.InBackgroundOf(terminal, "run");

        Assert.True(kvmsharp.WaitForExit(Patience), $"kvmsharp & never finished (stopped by SIGTTOU/SIGTTIN?)\n{kvmsharp.StandardError}");
        string stderr = kvmsharp.StandardError;
        log.WriteLine(stderr);
        Assert.Equal(0, kvmsharp.ExitCode);
        Assert.Contains(BuiltInGuest.Banner, terminal.Output);
        Assert.Contains("VM ended: guest exited with status 0", stderr);
        Assert.Contains("running in the background", stderr);
        AssertSameAttributes(before, terminal.Attributes);
    }

    private static unsafe void AssertSameAttributes(termios expected, termios actual)
    {
        Assert.Equal(expected.c_iflag, actual.c_iflag);
        Assert.Equal(expected.c_oflag, actual.c_oflag);
        Assert.Equal(expected.c_cflag, actual.c_cflag);
        Assert.Equal(expected.c_lflag, actual.c_lflag);
        Assert.Equal(expected.c_cc[VMIN], actual.c_cc[VMIN]);
        Assert.Equal(expected.c_cc[VTIME], actual.c_cc[VTIME]);
    }

    private const string KeypadTransmit = "\u001b[?1h", KeypadLocal = "\u001b[?1l\u001b>";

    private static class ConsoleKeys
    {
        public const byte CtrlA = 0x01;
    }
}
