namespace KvmSharp.Devices.Serial;

/// <summary>
/// Sends transmitted bytes to a <see cref="Stream"/> (stdout, a log file, a FIFO) from a writer thread of its own, so
/// a slow or stalled reader never blocks a vCPU or the VM's shutdown.
/// </summary>
/// <remarks>
/// <para>Bytes wait in a bounded ring. The writer thread writes them out when a line ends, when the ring is a quarter
/// full, on <see cref="Flush(TimeSpan)"/>, at <see cref="Dispose"/>, and (with <c>maxFlushDelay</c>) once the oldest
/// byte has waited that long, so a prompt such as "login: " without a newline still shows.</para>
/// <para>When the ring is full because the reader stalls, new bytes are dropped and counted
/// (<see cref="DroppedBytes"/>): the guest keeps running. A failing write (EPIPE when stdout's reader went away, say)
/// stops the writer; it is kept in <see cref="Failure"/> and reported once through <see cref="Failed"/>, and later
/// bytes count as dropped.</para>
/// <para><see cref="Write"/> is thread-safe, allocates nothing and never waits for I/O.</para>
/// </remarks>
public sealed class StreamSerialSink : ISerialSink, IDisposable
{
    /// <summary>How long <see cref="Dispose"/> lets the writer drain what is buffered before giving up on it.</summary>
    public static readonly TimeSpan DisposeDrainTimeout = TimeSpan.FromMilliseconds(250);

    // A plain monitor: the writer thread and Flush wait on it.
    private readonly object _gate = new();
    private readonly byte[] _ring;
    private readonly bool _leaveOpen;
    private readonly long _maxFlushDelayMs;
    private readonly Thread _writer;
    private Func<Stream>? _open;
    private Stream? _stream;
    private long _produced;      // bytes accepted into the ring, ever
    private long _taken;         // bytes the writer has taken out of the ring, ever
    private long _written;       // bytes the stream has accepted, ever
    private long _lineEndAt;     // _produced just after the last '\n'
    private long _flushUpTo;     // Flush asked for everything up to here
    private long _pendingSince;  // Environment.TickCount64 when the ring last became non-empty
    private long _dropped;
    private bool _stopping;
    private bool _disposed;
    private bool _writerEnded;
    private bool _stalled;       // a Flush timed out: the reader is not keeping up
    private Exception? _failure;

    /// <param name="stream">Writable destination.</param>
    /// <param name="leaveOpen">Keep <paramref name="stream"/> open when this sink is disposed.</param>
    /// <param name="bufferSize">Bytes held for a slow reader before new ones are dropped.</param>
    /// <param name="maxFlushDelay">If set, the longest a byte without a following newline waits before it is written.</param>
    public StreamSerialSink(Stream stream, bool leaveOpen = false, int bufferSize = 64 * 1024, TimeSpan? maxFlushDelay = null)
        : this(bufferSize, maxFlushDelay, leaveOpen)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanWrite)
        {
            throw new ArgumentException("The stream must be writable.", nameof(stream));
        }

        _stream = stream;
        _writer.Start();
    }

    /// <summary>A sink whose stream is opened on the writer thread (a FIFO's open waits for a reader; the VM must not).</summary>
    /// <param name="open">Opens the destination; its failure is reported like a failing write.</param>
    /// <param name="bufferSize">Bytes held for a slow reader before new ones are dropped.</param>
    /// <param name="maxFlushDelay">If set, the longest a byte without a following newline waits before it is written.</param>
    public StreamSerialSink(Func<Stream> open, int bufferSize = 64 * 1024, TimeSpan? maxFlushDelay = null)
        : this(bufferSize, maxFlushDelay, leaveOpen: false)
    {
        ArgumentNullException.ThrowIfNull(open);
        _open = open;
        _writer.Start();
    }

    private StreamSerialSink(int bufferSize, TimeSpan? maxFlushDelay, bool leaveOpen)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bufferSize);
        if (maxFlushDelay is { } delay)
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(delay, TimeSpan.Zero, nameof(maxFlushDelay));
            _maxFlushDelayMs = Math.Max(1, (long)delay.TotalMilliseconds);
        }

        _ring = new byte[bufferSize];
        _leaveOpen = leaveOpen;
        _writer = new Thread(WriterLoop) { IsBackground = true, Name = "serial-output" };
    }

    /// <summary>Bytes lost so far: the ring was full (the reader stalled), the output failed, or the sink was closed.</summary>
    public long DroppedBytes => Interlocked.Read(ref _dropped);

    /// <summary>Why the output stopped working (EPIPE, say), or null while it works.</summary>
    public Exception? Failure => Volatile.Read(ref _failure);

    /// <summary>Raised once, on the writer thread, when opening or writing the stream fails.</summary>
    public event Action<Exception>? Failed;

    /// <inheritdoc />
    /// <remarks>Bytes written after <see cref="Dispose"/> or after a failure are dropped: guest output must not crash the VMM.</remarks>
    public void Write(byte value)
    {
        lock (_gate)
        {
            long buffered = _produced - _taken;
            if (_stopping || _failure is not null || buffered == _ring.Length)
            {
                _dropped++;
                return;
            }

            if (buffered == 0)
            {
                _pendingSince = Environment.TickCount64;
            }

            _ring[_produced % _ring.Length] = value;
            _produced++;
            if (value == (byte)'\n')
            {
                _lineEndAt = _produced;
                Monitor.PulseAll(_gate);
            }
            else if (buffered + 1 == _ring.Length / 4 || buffered == 0)
            {
                // A quarter full: write now; the first byte of a batch: start the writer's flush-delay clock.
                Monitor.PulseAll(_gate);
            }
        }
    }

    /// <summary>Wait (bounded) until every byte accepted so far has reached the stream.</summary>
    /// <returns>false if the writer did not get there in time (a stalled reader) or the output has failed.</returns>
    public bool Flush(TimeSpan timeout)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        lock (_gate)
        {
            long target = _produced;
            _flushUpTo = Math.Max(_flushUpTo, target);
            Monitor.PulseAll(_gate);
            while (_written < target && _failure is null && !_writerEnded)
            {
                long left = deadline - Environment.TickCount64;
                if (left <= 0)
                {
                    _stalled = true;
                    return false;
                }

                Monitor.Wait(_gate, TimeSpan.FromMilliseconds(left));
            }

            return _failure is null && _written >= target;
        }
    }

    /// <summary>Flush with a generous bound (for tests and short-lived sinks).</summary>
    public void Flush() => Flush(TimeSpan.FromSeconds(5));

    /// <summary>
    /// Let the writer drain what is buffered for at most <see cref="DisposeDrainTimeout"/> (not at all if a
    /// <see cref="Flush(TimeSpan)"/> already timed out), then close the stream unless it was left open. A writer stuck on
    /// a stalled reader is abandoned (it is a background thread), its bytes counted as dropped.
    /// </summary>
    public void Dispose()
    {
        bool stalled;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _stopping = true;
            stalled = _stalled;
            Monitor.PulseAll(_gate);
        }

        bool drained = _writer.Join(stalled ? TimeSpan.Zero : DisposeDrainTimeout);
        lock (_gate)
        {
            if (!drained)
            {
                // Whatever the stuck writer holds or has not taken will not arrive.
                _dropped += _produced - _written;
                _written = _produced;
                return;
            }
        }

        if (!_leaveOpen)
        {
            try
            {
                _stream?.Dispose();
            }
            catch (IOException)
            {
                // Closing a stream whose reader left can fail; the failure was already reported.
            }
        }
    }

    private void WriterLoop()
    {
        try
        {
            if (_open is not null)
            {
                var opened = _open();
                lock (_gate)
                {
                    _stream = opened;
                    _open = null;
                }
            }

            var chunk = new byte[Math.Min(_ring.Length, 16 * 1024)];
            while (TakeChunk(chunk) is var count and > 0)
            {
                _stream!.Write(chunk, 0, count);
                _stream.Flush();
                lock (_gate)
                {
                    _written += count;
                    Monitor.PulseAll(_gate);
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ObjectDisposedException or NotSupportedException)
        {
            lock (_gate)
            {
                _failure = e;
                // Nothing buffered or in flight will be written any more.
                _dropped += _produced - _written;
                _taken = _written = _produced;
                Monitor.PulseAll(_gate);
            }

            Failed?.Invoke(e);
        }
        finally
        {
            lock (_gate)
            {
                _writerEnded = true;
                Monitor.PulseAll(_gate);
            }
        }
    }

    // Waits until there is something worth writing; 0 when the sink is stopping and the ring is empty.
    private int TakeChunk(byte[] chunk)
    {
        lock (_gate)
        {
            while (true)
            {
                long buffered = _produced - _taken;
                if (buffered == 0)
                {
                    if (_stopping)
                    {
                        return 0;
                    }

                    Monitor.Wait(_gate);
                    continue;
                }

                if (_stopping || _lineEndAt > _taken || _flushUpTo > _taken || buffered >= _ring.Length / 4)
                {
                    break;
                }

                if (_maxFlushDelayMs == 0)
                {
                    Monitor.Wait(_gate);
                    continue;
                }

                long wait = _pendingSince + _maxFlushDelayMs - Environment.TickCount64;
                if (wait <= 0)
                {
                    break;
                }

                Monitor.Wait(_gate, TimeSpan.FromMilliseconds(wait));
            }

            int count = (int)Math.Min(_produced - _taken, chunk.Length);
            for (int i = 0; i < count; i++)
            {
                chunk[i] = _ring[(_taken + i) % _ring.Length];
            }

            _taken += count;
            return count;
        }
    }
}
