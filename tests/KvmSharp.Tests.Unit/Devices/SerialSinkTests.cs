using System.Text;
using KvmSharp.Devices.Serial;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices;

public sealed class SerialSinkTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    [Fact]
    public void Stream_sink_writes_a_line_without_being_asked_but_holds_a_partial_one()
    {
        var stream = new WriteCountingStream();
        using var sink = new StreamSerialSink(stream, leaveOpen: true);

        Write(sink, "login:\n");
        Assert.True(SpinWait.SpinUntil(() => stream.BytesWritten == 7, Patience));

        Write(sink, "pass");
        Thread.Sleep(50);
        Assert.Equal("login:\n", stream.Text);
    }

    [Fact]
    public void Stream_sink_flushes_when_asked()
    {
        var stream = new WriteCountingStream();
        using var sink = new StreamSerialSink(stream, leaveOpen: true);
        Write(sink, "$ ");

        Assert.True(sink.Flush(Patience));

        Assert.Equal("$ ", stream.Text);
    }

    [Fact]
    public void Stream_sink_writes_once_a_quarter_of_its_buffer_is_used()
    {
        var stream = new WriteCountingStream();
        using var sink = new StreamSerialSink(stream, leaveOpen: true, bufferSize: 16);

        Write(sink, "abcdef");

        Assert.True(SpinWait.SpinUntil(() => stream.BytesWritten >= 4, Patience));
        Assert.StartsWith("abcd", stream.Text);
    }

    [Fact]
    public void Stream_sink_flushes_on_dispose_and_respects_leave_open()
    {
        var kept = new WriteCountingStream();
        using (var sink = new StreamSerialSink(kept, leaveOpen: true))
        {
            Write(sink, "bye");
        }

        var closed = new MemoryStream();
        new StreamSerialSink(closed).Dispose();

        Assert.Equal("bye", kept.Text);
        Assert.True(kept.CanWrite);
        Assert.False(closed.CanWrite);
    }

    [Fact]
    public void Stream_sink_drops_and_counts_bytes_written_after_dispose()
    {
        var stream = new MemoryStream();
        var sink = new StreamSerialSink(stream, leaveOpen: true);
        sink.Dispose();

        Write(sink, "late\n");

        Assert.Equal(0, stream.Length);
        Assert.Equal(5, sink.DroppedBytes);
    }

    [Fact]
    public void Stream_sink_with_a_max_delay_flushes_a_prompt_without_newline()
    {
        var stream = new WriteCountingStream();
        using var sink = new StreamSerialSink(stream, leaveOpen: true, maxFlushDelay: TimeSpan.FromMilliseconds(10));

        Write(sink, "login: ");

        // Nobody calls Flush here: only the writer's delay can move the bytes.
        Assert.True(SpinWait.SpinUntil(() => stream.BytesWritten == 7, Patience));
        Assert.Equal("login: ", stream.Text);
    }

    [Fact]
    public void Stream_sink_keeps_every_byte_from_concurrent_writers_when_the_reader_keeps_up()
    {
        const int Writers = 4;
        const int PerWriter = 10_000;
        var stream = new WriteCountingStream();
        using var sink = new StreamSerialSink(stream, leaveOpen: true, bufferSize: Writers * PerWriter);

        var threads = new Thread[Writers];
        for (int t = 0; t < Writers; t++)
        {
            byte letter = (byte)('a' + t);
            threads[t] = new Thread(() =>
            {
                for (int i = 0; i < PerWriter; i++)
                {
                    sink.Write(letter);
                }
            });
            threads[t].Start();
        }

        foreach (Thread thread in threads)
        {
            Assert.True(thread.Join(Patience));
        }

        Assert.True(sink.Flush(Patience));
        byte[] written = stream.ToArray();
        Assert.Equal(0, sink.DroppedBytes);
        Assert.Equal(Writers * PerWriter, written.Length);
        for (int t = 0; t < Writers; t++)
        {
            Assert.Equal(PerWriter, written.Count(b => b == 'a' + t));
        }
    }

    [Fact]
    public void A_stalled_reader_never_blocks_the_writer_it_costs_dropped_bytes()
    {
        const int BufferSize = 1024;
        const int Total = 20 * BufferSize;
        var stream = new StalledStream();
        var sink = new StreamSerialSink(stream, leaveOpen: true, bufferSize: BufferSize);

        // A vCPU-like thread writes far more than the buffer holds while the stream accepts nothing.
        var vcpu = new Thread(() =>
        {
            for (int i = 0; i < Total; i++)
            {
                sink.Write((byte)'x');
            }
        });
        vcpu.Start();

        Assert.True(vcpu.Join(Patience), "Write blocked on a stalled reader");
        Assert.True(sink.DroppedBytes >= Total - 2 * BufferSize, $"dropped {sink.DroppedBytes}");
        Assert.False(sink.Flush(TimeSpan.FromMilliseconds(50)));

        var disposing = new Thread(sink.Dispose);
        disposing.Start();
        Assert.True(disposing.Join(Patience), "Dispose waited for a stalled reader");
        // After dispose every byte is accounted for: none was written, so all were dropped.
        Assert.Equal(Total, sink.DroppedBytes);
        stream.Release();
    }

    [Fact]
    public void A_failing_stream_is_reported_once_and_later_bytes_are_dropped()
    {
        var failure = new IOException("Broken pipe", 32);
        var reported = new List<Exception>();
        using var sink = new StreamSerialSink(new FailingStream(failure), leaveOpen: true);
        sink.Failed += e =>
        {
            lock (reported) reported.Add(e);
        };

        Write(sink, "first line\n");
        Assert.True(SpinWait.SpinUntil(() => sink.Failure is not null, Patience));
        Write(sink, "second\n");

        Assert.Same(failure, sink.Failure);
        Assert.True(SpinWait.SpinUntil(() => { lock (reported) return reported.Count == 1; }, Patience));
        Assert.Equal(11 + 7, sink.DroppedBytes);
        Assert.False(sink.Flush(TimeSpan.FromMilliseconds(10)));
    }

    [Fact]
    public void A_stream_opened_on_the_writer_thread_does_not_hold_up_writes()
    {
        using var mayOpen = new ManualResetEventSlim(false);
        var stream = new WriteCountingStream();
        using var sink = new StreamSerialSink(() =>
        {
            mayOpen.Wait(); // a FIFO waiting for its reader
            return stream;
        });

        Write(sink, "early\n");
        Assert.Equal(0, stream.BytesWritten);

        mayOpen.Set();
        Assert.True(sink.Flush(Patience));
        Assert.Equal("early\n", stream.Text);
    }

    [Fact]
    public void A_stream_that_cannot_be_opened_is_reported_as_a_failure()
    {
        using var sink = new StreamSerialSink(() => throw new IOException("no reader"));

        Assert.True(SpinWait.SpinUntil(() => sink.Failure is not null, Patience));
        Write(sink, "lost");

        Assert.Equal("no reader", sink.Failure!.Message);
        Assert.Equal(4, sink.DroppedBytes);
    }

    [Fact]
    public void Expect_sink_finds_text_split_across_writes_and_overlapping_false_starts()
    {
        var sink = new ExpectSerialSink("aab");
        Write(sink, "xa");
        Write(sink, "aa");
        Assert.False(sink.Matched);

        Write(sink, "b tail");

        Assert.True(sink.Matched);
        Assert.True(sink.WaitForMatch(TimeSpan.Zero));
    }

    [Fact]
    public void Expect_sink_matches_utf8_text()
    {
        var sink = new ExpectSerialSink("héllo ✓");
        Write(sink, "boot: héllo ✓\n");

        Assert.True(sink.Matched);
    }

    [Fact]
    public void Expect_sink_times_out_and_is_cancelled_without_a_match()
    {
        var sink = new ExpectSerialSink("login:");
        Write(sink, "kernel panic\n");

        Assert.False(sink.WaitForMatch(TimeSpan.FromMilliseconds(20)));
        using var ended = new CancellationTokenSource(TimeSpan.FromMilliseconds(20));
        Assert.False(sink.WaitForMatch(Timeout.InfiniteTimeSpan, ended.Token));
    }

    [Fact]
    public void Expect_sink_sees_text_written_later_by_another_thread()
    {
        var sink = new ExpectSerialSink("login:");
        Write(sink, "Welcome\nbuildroot lo");
        var writer = new Thread(() =>
        {
            Thread.Sleep(20);
            Write(sink, "gin: ");
        });
        writer.Start();

        bool found = sink.WaitForMatch(Patience);

        Assert.True(writer.Join(Patience));
        Assert.True(found);
    }

    [Fact]
    public void Expect_sink_keeps_only_its_tail_however_much_the_guest_prints()
    {
        const int TailBytes = 1024;
        var sink = new ExpectSerialSink("never printed", TailBytes);
        for (int line = 0; line < 100_000; line++)
        {
            Write(sink, $"line {line}\n");
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100_000; i++)
        {
            sink.Write((byte)'.');
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        sink.Write((byte)'\n');
        string tail = sink.Tail(3);
        string[] lines = tail.Split('\n');
        Assert.True(tail.Length <= TailBytes, $"tail of {tail.Length} chars");
        Assert.False(sink.Matched);
        Assert.True(sink.Length > 1_000_000);
        // Only the window survives: the dots (cut at its start) and the final newline; no earlier "line N".
        Assert.Equal(2, lines.Length);
        Assert.Equal(new string('.', TailBytes - 1), lines[0]);
        Assert.Equal("", lines[1]);
    }

    [Fact]
    public void Expect_sink_tail_returns_the_last_lines()
    {
        var sink = new ExpectSerialSink(null);
        Write(sink, "one\ntwo\nthree\nfour");

        Assert.Equal("three\nfour", sink.Tail(2));
        Assert.False(sink.WaitForMatch(TimeSpan.Zero));
    }

    [Fact]
    public void Capturing_sink_exposes_everything_written_as_text()
    {
        var sink = new CapturingSerialSink();

        Write(sink, "Linux version 6.x\nüñ\n");

        Assert.Equal("Linux version 6.x\nüñ\n", sink.Text);
        Assert.Equal(Encoding.UTF8.GetByteCount("Linux version 6.x\nüñ\n"), sink.Length);
    }

    [Fact]
    public void Capturing_sink_grows_past_its_initial_buffer()
    {
        var sink = new CapturingSerialSink();
        string text = new('x', 5000);

        Write(sink, text + "END");

        Assert.Equal(text + "END", sink.Text);
    }

    [Fact]
    public void WaitFor_returns_at_once_when_the_text_is_already_there()
    {
        var sink = new CapturingSerialSink();
        Write(sink, "boot ok\n");

        Assert.True(sink.WaitFor("ok", TimeSpan.Zero));
    }

    [Fact]
    public void WaitFor_times_out_when_the_text_never_comes()
    {
        var sink = new CapturingSerialSink();
        Write(sink, "kernel panic");

        Assert.False(sink.WaitFor("login:", TimeSpan.FromMilliseconds(50)));
    }

    [Fact]
    public void WaitFor_sees_text_written_later_by_another_thread_byte_by_byte()
    {
        var sink = new CapturingSerialSink();
        Write(sink, "Welcome\nbuildroot lo");
        var writer = new Thread(() =>
        {
            Thread.Sleep(20);
            Write(sink, "gin: ");
        });
        writer.Start();

        bool found = sink.WaitFor("login:", Patience);

        Assert.True(writer.Join(Patience));
        Assert.True(found);
    }

    [Fact]
    public void WaitFor_stops_early_when_cancelled()
    {
        var sink = new CapturingSerialSink();
        using var vmExited = new CancellationTokenSource(TimeSpan.FromMilliseconds(20));

        DateTime started = DateTime.UtcNow;
        bool found = sink.WaitFor("never", Timeout.InfiniteTimeSpan, vmExited.Token);

        Assert.False(found);
        Assert.True(DateTime.UtcNow - started < Patience);
    }

    private static void Write(ISerialSink sink, string text)
    {
        foreach (byte b in Encoding.UTF8.GetBytes(text))
        {
            sink.Write(b);
        }
    }

    /// <summary>A MemoryStream whose written bytes can be read safely from another thread.</summary>
    private sealed class WriteCountingStream : MemoryStream
    {
        private readonly Lock _lock = new();
        private long _bytesWritten;

        public long BytesWritten => Interlocked.Read(ref _bytesWritten);

        public string Text
        {
            get
            {
                lock (_lock) return Encoding.UTF8.GetString(ToArray());
            }
        }

        public override void Write(byte[] buffer, int offset, int count)
        {
            lock (_lock) base.Write(buffer, offset, count);
            Interlocked.Add(ref _bytesWritten, count);
        }
    }

    /// <summary>A reader that never reads: every write blocks until released (a pipe nobody drains).</summary>
    private sealed class StalledStream : MemoryStream
    {
        private readonly ManualResetEventSlim _released = new(false);

        public void Release() => _released.Set();

        public override void Write(byte[] buffer, int offset, int count) => _released.Wait();
    }

    /// <summary>A stream whose every write fails (EPIPE: the reader went away).</summary>
    private sealed class FailingStream(IOException failure) : MemoryStream
    {
        public override void Write(byte[] buffer, int offset, int count) => throw failure;
    }
}
