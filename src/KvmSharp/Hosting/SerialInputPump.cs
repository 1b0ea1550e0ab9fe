using KvmSharp.Devices.Serial;
using KvmSharp.Terminal;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Hosting;

/// <summary>
/// Feeds stdin into the attached UART's receive FIFO, byte by byte as it arrives, reading fd 0 directly (.NET's
/// Console would put its line editor, local echo and keypad mode in the way).
/// </summary>
/// <remarks>
/// <para>A terminal is switched to raw mode (<see cref="RawTerminal"/>) and restored on dispose or at process exit;
/// the Ctrl-A escape keys (<see cref="ConsoleEscape"/>) work there. A pipe or file is passed through untouched, and
/// its EOF just ends input.</para>
/// <para>Started in the background (<c>&amp;</c>), the pump neither reads the terminal (that would stop the process
/// with SIGTTIN) nor changes it (SIGTTOU); once the shell brings it to the foreground it goes raw and reads.</para>
/// </remarks>
public sealed unsafe class SerialInputPump : IDisposable
{
    private const int StandardInput = 0;
    private const int PollMilliseconds = 100;

    private readonly Lock _gate = new();
    private readonly ConsoleEscape _escape = new();
    private readonly Action _quit;
    private readonly Action<string> _notice;
    private readonly Thread _thread;
    private IConsoleInput? _target;
    private RawTerminal? _raw;
    private bool _rawRefused;
    private volatile bool _stopping;

    private SerialInputPump(Action quit, Action<string> notice)
    {
        _quit = quit;
        _notice = notice;
        _thread = new Thread(Pump) { IsBackground = true, Name = "serial-input" };
    }

    /// <summary>Start reading stdin; <paramref name="quit"/> runs when Ctrl-A x is typed on a raw terminal.</summary>
    /// <param name="quit">Ctrl-A x was typed.</param>
    /// <param name="notice">One-line news for the user: raw mode on, input waiting for the foreground.</param>
    public static SerialInputPump Start(Action quit, Action<string> notice)
    {
        ArgumentNullException.ThrowIfNull(quit);
        ArgumentNullException.ThrowIfNull(notice);
        var pump = new SerialInputPump(quit, notice);
        pump._thread.Start();
        return pump;
    }

    /// <summary>Where typed bytes go (the current VM's UART), or null to drop them (between reboots).</summary>
    public void Attach(IConsoleInput? serial) => Volatile.Write(ref _target, serial);

    /// <summary>True while the terminal is in raw mode.</summary>
    public bool IsRaw
    {
        get
        {
            lock (_gate) return _raw is not null;
        }
    }

    /// <summary>Stop reading and restore the terminal (at once; the thread notices within one poll interval).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _stopping = true;
            _raw?.Dispose();
            _raw = null;
        }
        _thread.Join(TimeSpan.FromMilliseconds(4 * PollMilliseconds));
    }

    private void Pump()
    {
        BlockTerminalInputStop();
        bool terminal = RawTerminal.IsTerminal(StandardInput);
        var buffer = new byte[256];
        var toGuest = new byte[256];
        bool toldBackground = false;
        while (!_stopping)
        {
            if (terminal)
            {
                if (!RawTerminal.IsForeground(StandardInput))
                {
                    if (!toldBackground)
                        _notice("running in the background: console input starts when kvmsharp is brought to the foreground (fg)");
                    toldBackground = true;
                    Thread.Sleep(PollMilliseconds);
                    continue;
                }
                EnterRawModeOnce();
            }

            var wanted = new pollfd { fd = StandardInput, events = (short)POLLIN };
            int ready = poll(&wanted, 1, PollMilliseconds);
            if (ready < 0 && errno != EINTR) return;
            if (ready <= 0) continue;

            long read;
            fixed (byte* p = buffer) read = LibC.read(StandardInput, p, buffer.Length);
            if (read == 0) return; // EOF: input ends, the VM runs on
            if (read < 0)
            {
                int error = errno;
                if (error == EINTR || error == EAGAIN) continue;
                if (error == EIO && terminal)
                {
                    Thread.Sleep(PollMilliseconds); // moved to the background meanwhile
                    continue;
                }
                return;
            }

            var typed = buffer.AsSpan(0, (int)read);
            if (IsRaw) typed = Decode(typed, toGuest);
            Deliver(typed);
        }
    }

    private void EnterRawModeOnce()
    {
        lock (_gate)
        {
            if (_raw is not null || _rawRefused || _stopping) return;
            _raw = RawTerminal.TryEnter(StandardInput);
            _rawRefused = _raw is null;
            if (_raw is not null) _notice("the terminal is in raw mode for the guest's console: Ctrl-A x quits, Ctrl-A h lists the keys");
        }
    }

    // Runs the escape keys; returns the bytes meant for the guest.
    private Span<byte> Decode(ReadOnlySpan<byte> typed, byte[] toGuest)
    {
        int count = 0;
        foreach (byte b in typed)
        {
            if (_escape.Decode(b, out byte forward, out var command)) toGuest[count++] = forward;
            switch (command)
            {
                case ConsoleCommand.Help:
                    Console.Error.Write(ConsoleEscape.Help);
                    break;
                case ConsoleCommand.Quit:
                    _quit();
                    break;
            }
        }
        return toGuest.AsSpan(0, count);
    }

    private void Deliver(ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty && !_stopping)
        {
            var serial = Volatile.Read(ref _target);
            if (serial is null) return; // no VM right now: typed bytes are lost, as on a real line
            int taken = serial.EnqueueInput(bytes);
            bytes = bytes[taken..];
            if (!bytes.IsEmpty) Thread.Sleep(1); // the guest's receive FIFO is full: let it drain
        }
    }

    // With SIGTTIN blocked, a read from the background fails with EIO instead of stopping the whole process.
    private static void BlockTerminalInputStop()
    {
        sigset_t ttin;
        sigemptyset(&ttin);
        sigaddset(&ttin, SIGTTIN);
        pthread_sigmask(SIG_BLOCK, &ttin, null);
    }
}
