namespace KvmSharp.Devices.Serial;

/// <summary>
/// Buffers transmitted bytes and writes them to a <see cref="Stream"/> (stdout, a log file) a line at a time.
/// </summary>
/// <remarks>
/// The buffer is flushed on '\n', when full, on <see cref="Flush"/> and on <see cref="Dispose"/>. A prompt such as
/// "login: " has no newline, so an interactive console should pass <c>maxFlushDelay</c>: a timer then flushes bytes
/// that have waited that long. Thread-safe; <see cref="Write"/> allocates nothing.
/// </remarks>
public sealed class StreamSerialSink : ISerialSink, IDisposable
{
    private readonly Lock _lock = new();
    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private readonly byte[] _buffer;
    private readonly Timer? _flushTimer;
    private readonly TimeSpan _maxFlushDelay;
    private int _buffered;
    private bool _disposed;

    /// <param name="stream">Writable destination.</param>
    /// <param name="leaveOpen">Keep <paramref name="stream"/> open when this sink is disposed.</param>
    /// <param name="bufferSize">Bytes buffered before a forced flush.</param>
    /// <param name="maxFlushDelay">If set, the longest a byte may wait in the buffer before a timer flushes it.</param>
    public StreamSerialSink(Stream stream, bool leaveOpen = false, int bufferSize = 4096, TimeSpan? maxFlushDelay = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bufferSize);
        if (!stream.CanWrite)
        {
            throw new ArgumentException("The stream must be writable.", nameof(stream));
        }

        _stream = stream;
        _leaveOpen = leaveOpen;
        _buffer = new byte[bufferSize];
        if (maxFlushDelay is { } delay)
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(delay, TimeSpan.Zero, nameof(maxFlushDelay));
            _maxFlushDelay = delay;
            _flushTimer = new Timer(static state => ((StreamSerialSink)state!).FlushFromTimer(), this, Timeout.Infinite, Timeout.Infinite);
        }
    }

    /// <inheritdoc />
    /// <remarks>Bytes written after <see cref="Dispose"/> are dropped: guest output must not crash the VMM on shutdown.</remarks>
    public void Write(byte value)
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _buffer[_buffered++] = value;
            if (value == (byte)'\n' || _buffered == _buffer.Length)
            {
                FlushLocked();
            }
            else if (_buffered == 1)
            {
                // First byte of a new batch: make sure it does not wait longer than the configured delay.
                _flushTimer?.Change(_maxFlushDelay, Timeout.InfiniteTimeSpan);
            }
        }
    }

    /// <summary>Write out buffered bytes and flush the stream.</summary>
    public void Flush()
    {
        lock (_lock)
        {
            if (!_disposed)
            {
                FlushLocked();
            }
        }
    }

    /// <summary>Flush, stop the timer and close the stream unless it was left open.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            try
            {
                FlushLocked();
            }
            finally
            {
                _disposed = true;
                _flushTimer?.Dispose();
                if (!_leaveOpen)
                {
                    _stream.Dispose();
                }
            }
        }
    }

    private void FlushLocked()
    {
        int count = _buffered;

        // Empty the buffer first so a failing stream cannot leave it full and break the next Write.
        _buffered = 0;
        if (count > 0)
        {
            _stream.Write(_buffer, 0, count);
        }

        _stream.Flush();
    }

    private void FlushFromTimer()
    {
        try
        {
            Flush();
        }
        catch (IOException)
        {
            // A timer thread has nobody to report to; the next Write or Flush will surface a lasting failure.
        }
        catch (ObjectDisposedException)
        {
            // The stream was closed under us during shutdown.
        }
    }
}
