using System.Diagnostics;
using System.Text;

namespace KvmSharp.Devices.Serial;

/// <summary>
/// Keeps every transmitted byte in memory so tests (and <c>--expect</c>) can inspect guest output or wait for it.
/// </summary>
/// <remarks>Growing the buffer allocates, so this sink is for tests and scripted runs, not for long-lived consoles.</remarks>
public sealed class CapturingSerialSink : ISerialSink
{
    // A plain monitor rather than Lock: WaitFor needs Monitor.Wait/PulseAll.
    private readonly object _gate = new();
    private byte[] _bytes = new byte[256];
    private int _length;

    /// <summary>Number of bytes captured so far.</summary>
    public int Length
    {
        get
        {
            lock (_gate)
            {
                return _length;
            }
        }
    }

    /// <summary>Everything captured so far, decoded as UTF-8 (invalid bytes become U+FFFD).</summary>
    public string Text
    {
        get
        {
            lock (_gate)
            {
                return Encoding.UTF8.GetString(_bytes, 0, _length);
            }
        }
    }

    /// <inheritdoc />
    public void Write(byte value)
    {
        lock (_gate)
        {
            if (_length == _bytes.Length)
            {
                Array.Resize(ref _bytes, _bytes.Length * 2);
            }

            _bytes[_length++] = value;
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>Wait until the captured output contains <paramref name="text"/> (UTF-8), already or later.</summary>
    /// <param name="text">Text to look for.</param>
    /// <param name="timeout">How long to wait; <see cref="Timeout.InfiniteTimeSpan"/> waits forever.</param>
    /// <param name="cancellationToken">Stops the wait early, e.g. when the VM has exited and no more output will come.</param>
    /// <returns>true if the text appeared; false on timeout or cancellation.</returns>
    public bool WaitFor(string text, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "The timeout must be non-negative or infinite.");
        }

        byte[] wanted = Encoding.UTF8.GetBytes(text);
        long started = Stopwatch.GetTimestamp();
        using CancellationTokenRegistration wakeOnCancel = cancellationToken.Register(
            static gate =>
            {
                lock (gate!)
                {
                    Monitor.PulseAll(gate);
                }
            },
            _gate);

        lock (_gate)
        {
            // Only search bytes not already searched, keeping an overlap so a match split across writes is found.
            int searchFrom = 0;
            while (true)
            {
                if (_bytes.AsSpan(searchFrom, _length - searchFrom).IndexOf(wanted) >= 0)
                {
                    return true;
                }

                searchFrom = Math.Max(0, _length - wanted.Length + 1);
                if (cancellationToken.IsCancellationRequested)
                {
                    return false;
                }

                if (timeout == Timeout.InfiniteTimeSpan)
                {
                    Monitor.Wait(_gate);
                    continue;
                }

                TimeSpan remaining = timeout - Stopwatch.GetElapsedTime(started);
                if (remaining <= TimeSpan.Zero)
                {
                    return false;
                }

                Monitor.Wait(_gate, remaining);
            }
        }
    }
}
