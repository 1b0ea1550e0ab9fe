using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Terminal;

/// <summary>
/// A terminal switched to raw mode for the guest's console, and switched back exactly once: on dispose, and at process
/// exit whatever path led there. Bytes then reach the guest as typed (no line editing, no local echo, Enter as \r,
/// Ctrl-C as 0x03); output processing stays on so log lines on stderr still start at the left margin.
/// </summary>
/// <remarks>
/// Only a process in the terminal's foreground process group may change it: one started in the background with
/// <c>&amp;</c> leaves the terminal alone (<see cref="TryEnter"/> returns null) instead of being stopped by SIGTTOU.
/// SIGTTOU is blocked on the calling thread around tcsetattr, so a race with the shell moving us to the background
/// cannot stop the process either.
/// </remarks>
public sealed unsafe class RawTerminal : IDisposable
{
    private readonly int _fd;
    private readonly termios _saved;
    private int _restored;

    private RawTerminal(int fd, termios saved)
    {
        _fd = fd;
        _saved = saved;
        AppDomain.CurrentDomain.ProcessExit += RestoreAtExit;
        AppDomain.CurrentDomain.UnhandledException += RestoreOnCrash;
    }

    /// <summary>True when <paramref name="fd"/> is a terminal.</summary>
    public static bool IsTerminal(int fd) => isatty(fd) == 1;

    /// <summary>True when this process is in the foreground process group of the terminal <paramref name="fd"/>.</summary>
    public static bool IsForeground(int fd)
    {
        int foreground = tcgetpgrp(fd);
        return foreground >= 0 && foreground == getpgrp();
    }

    /// <summary>Switch the terminal <paramref name="fd"/> to raw mode; null when it is no terminal, not ours to change (background), or refuses.</summary>
    public static RawTerminal? TryEnter(int fd)
    {
        if (!IsTerminal(fd) || !IsForeground(fd))
        {
            return null;
        }

        termios saved;
        if (tcgetattr(fd, &saved) != 0)
        {
            return null;
        }

        LetDotNetInitialiseTheConsoleNow();
        termios raw = MakeRaw(saved);
        if (!SetAttributes(fd, &raw))
        {
            return null;
        }

        LeaveKeypadApplicationMode();
        return new RawTerminal(fd, saved);
    }

    // .NET's console switches the terminal's keypad to application mode (terminfo smkx) on its first write when stdin is a
    // terminal, and never back. Have that happen now, before the session, rather than at the next log line.
    private static void LetDotNetInitialiseTheConsoleNow()
    {
        using var stderr = Console.OpenStandardError();
        stderr.Write(ReadOnlySpan<byte>.Empty);
    }

    // rmkx of VT100-compatible terminals (xterm, screen, tmux, the Linux console): normal cursor keys and keypad, what a
    // shell prompt expects and the guest sees from QEMU. A no-op when the mode was not switched.
    private static ReadOnlySpan<byte> KeypadLocal => "\u001b[?1l\u001b>"u8;

    private static void LeaveKeypadApplicationMode()
    {
        const int StandardOutput = 1;
        if (!IsTerminal(StandardOutput))
        {
            return;
        }

        fixed (byte* p = KeypadLocal)
        {
            write(StandardOutput, p, KeypadLocal.Length);
        }
    }

    /// <summary>
    /// Raw input as QEMU's stdio console sets it: no line editing, echo, signal keys, CR translation or flow control;
    /// 8-bit characters; reads return as soon as one byte is there. Output post-processing (\n to \r\n) stays.
    /// </summary>
    public static termios MakeRaw(termios attributes)
    {
        attributes.c_iflag &= (uint)~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
        attributes.c_oflag |= (uint)OPOST;
        attributes.c_lflag &= (uint)~(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
        attributes.c_cflag &= (uint)~(CSIZE | PARENB);
        attributes.c_cflag |= (uint)CS8;
        attributes.c_cc[VMIN] = 1;
        attributes.c_cc[VTIME] = 0;
        return attributes;
    }

    /// <summary>Put the terminal back as it was (once; later calls do nothing).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _restored, 1) != 0)
        {
            return;
        }

        termios saved = _saved;
        SetAttributes(_fd, &saved);
        LeaveKeypadApplicationMode();
        AppDomain.CurrentDomain.ProcessExit -= RestoreAtExit;
        AppDomain.CurrentDomain.UnhandledException -= RestoreOnCrash;
    }

    private void RestoreAtExit(object? sender, EventArgs e) => Dispose();

    private void RestoreOnCrash(object? sender, UnhandledExceptionEventArgs e) => Dispose();

    // tcsetattr with SIGTTOU blocked on this thread: a background process then gets EIO-free success or an error,
    // never a stop (POSIX: a blocked SIGTTOU lets the call proceed).
    private static bool SetAttributes(int fd, termios* attributes)
    {
        sigset_t ttou, previous;
        sigemptyset(&ttou);
        sigaddset(&ttou, SIGTTOU);
        pthread_sigmask(SIG_BLOCK, &ttou, &previous);
        try
        {
            int result;
            do
            {
                result = tcsetattr(fd, (int)TCSANOW, attributes);
            }
            while (result != 0 && errno == EINTR);

            return result == 0;
        }
        finally
        {
            pthread_sigmask(SIG_SETMASK, &previous, null);
        }
    }
}
