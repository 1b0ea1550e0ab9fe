using System.Text;

namespace KvmSharp.Devices.Serial;

/// <summary>
/// Watches transmitted bytes for an expected text as they pass (<c>--expect</c>), keeping only the last few KiB for a
/// report: memory stays bounded however long the guest talks.
/// </summary>
/// <remarks>
/// Matching is streaming (Knuth-Morris-Pratt over the UTF-8 bytes), so a match split across writes is found and
/// nothing but the match state is kept. <see cref="Write"/> is thread-safe and allocates nothing.
/// </remarks>
public sealed class ExpectSerialSink : ISerialSink
{
    private readonly object _gate = new();
    private readonly byte[]? _wanted;
    private readonly int[]? _fallback;
    private readonly byte[] _tail;
    private long _length;
    private int _matchedPrefix;
    private bool _matched;

    /// <param name="expected">Text to watch for, or null to keep only the tail (a run with just a timeout).</param>
    /// <param name="tailBytes">How many of the last bytes to keep for <see cref="Tail"/>.</param>
    public ExpectSerialSink(string? expected, int tailBytes = 8 * 1024)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tailBytes);
        _tail = new byte[tailBytes];
        if (expected is null)
        {
            return;
        }

        ArgumentException.ThrowIfNullOrEmpty(expected);
        _wanted = Encoding.UTF8.GetBytes(expected);
        _fallback = BuildFallback(_wanted);
    }

    /// <summary>True once the expected text has gone by.</summary>
    public bool Matched
    {
        get
        {
            lock (_gate)
            {
                return _matched;
            }
        }
    }

    /// <summary>Bytes seen so far (only the last few KiB of them are kept).</summary>
    public long Length
    {
        get
        {
            lock (_gate)
            {
                return _length;
            }
        }
    }

    /// <inheritdoc />
    public void Write(byte value)
    {
        lock (_gate)
        {
            _tail[_length % _tail.Length] = value;
            _length++;
            if (_wanted is null || _matched)
            {
                return;
            }

            int state = _matchedPrefix;
            while (state > 0 && _wanted[state] != value)
            {
                state = _fallback![state - 1];
            }

            if (_wanted[state] == value)
            {
                state++;
            }

            if (state == _wanted.Length)
            {
                _matched = true;
                Monitor.PulseAll(_gate);
            }

            _matchedPrefix = state;
        }
    }

    /// <summary>Wait until the expected text has gone by (already or later).</summary>
    /// <param name="timeout">How long to wait; <see cref="Timeout.InfiniteTimeSpan"/> waits forever.</param>
    /// <param name="cancellationToken">Stops the wait early, e.g. when the VM has ended.</param>
    /// <returns>true if the text appeared; false on timeout or cancellation, or when no text was given.</returns>
    public bool WaitForMatch(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "The timeout must be non-negative or infinite.");
        }

        long deadline = timeout == Timeout.InfiniteTimeSpan ? long.MaxValue : Environment.TickCount64 + (long)timeout.TotalMilliseconds;
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
            while (!_matched)
            {
                if (cancellationToken.IsCancellationRequested)
                {
                    return false;
                }

                if (deadline == long.MaxValue)
                {
                    Monitor.Wait(_gate);
                    continue;
                }

                long left = deadline - Environment.TickCount64;
                if (left <= 0)
                {
                    return false;
                }

                Monitor.Wait(_gate, TimeSpan.FromMilliseconds(left));
            }

            return true;
        }
    }

    /// <summary>The last <paramref name="lines"/> lines kept (UTF-8; a line cut by the size bound starts the text).</summary>
    public string Tail(int lines)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(lines);
        byte[] kept;
        lock (_gate)
        {
            int count = (int)Math.Min(_length, _tail.Length);
            kept = new byte[count];
            long start = _length - count;
            for (int i = 0; i < count; i++)
            {
                kept[i] = _tail[(start + i) % _tail.Length];
            }
        }

        string[] all = Encoding.UTF8.GetString(kept).Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }

    // fallback[i]: the length of the longest proper prefix of wanted[..(i+1)] that is also its suffix.
    private static int[] BuildFallback(byte[] wanted)
    {
        var fallback = new int[wanted.Length];
        int length = 0;
        for (int i = 1; i < wanted.Length; i++)
        {
            while (length > 0 && wanted[i] != wanted[length])
            {
                length = fallback[length - 1];
            }

            if (wanted[i] == wanted[length])
            {
                length++;
            }

            fallback[i] = length;
        }

        return fallback;
    }
}
