using System.Text;
using KvmSharp.Devices.Serial;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices;

public sealed class SerialSinkTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    [Fact]
    public void Stream_sink_buffers_until_a_newline()
    {
        var stream = new MemoryStream();
        using var sink = new StreamSerialSink(stream, leaveOpen: true);

        Write(sink, "login");
        Assert.Equal(0, stream.Length);

        Write(sink, ":\n");
        Assert.Equal("login:\n", Encoding.ASCII.GetString(stream.ToArray()));
    }

    [Fact]
    public void Stream_sink_flushes_when_asked()
    {
        var stream = new MemoryStream();
        using var sink = new StreamSerialSink(stream, leaveOpen: true);
        Write(sink, "$ ");

        sink.Flush();

        Assert.Equal("$ ", Encoding.ASCII.GetString(stream.ToArray()));
    }

    [Fact]
    public void Stream_sink_flushes_a_full_buffer()
    {
        var stream = new MemoryStream();
        using var sink = new StreamSerialSink(stream, leaveOpen: true, bufferSize: 4);

        Write(sink, "abcdef");

        Assert.Equal("abcd", Encoding.ASCII.GetString(stream.ToArray()));
    }

    [Fact]
    public void Stream_sink_flushes_on_dispose_and_respects_leave_open()
    {
        var kept = new MemoryStream();
        using (var sink = new StreamSerialSink(kept, leaveOpen: true))
        {
            Write(sink, "bye");
        }

        var closed = new MemoryStream();
        new StreamSerialSink(closed).Dispose();

        Assert.Equal("bye", Encoding.ASCII.GetString(kept.ToArray()));
        Assert.True(kept.CanWrite);
        Assert.False(closed.CanWrite);
    }

    [Fact]
    public void Stream_sink_drops_bytes_written_after_dispose()
    {
        var stream = new MemoryStream();
        var sink = new StreamSerialSink(stream, leaveOpen: true);
        sink.Dispose();

        Write(sink, "late\n");

        Assert.Equal(0, stream.Length);
    }

    [Fact]
    public void Stream_sink_with_a_max_delay_flushes_a_prompt_without_newline()
    {
        var stream = new WriteCountingStream();
        using var sink = new StreamSerialSink(stream, leaveOpen: true, maxFlushDelay: TimeSpan.FromMilliseconds(10));

        Write(sink, "login: ");

        // Nobody calls Flush here: only the sink's timer can move the bytes.
        Assert.True(SpinWait.SpinUntil(() => stream.BytesWritten == 7, Patience));
        Assert.Equal("login: ", Encoding.ASCII.GetString(stream.ToArray()));
    }

    [Fact]
    public void Stream_sink_keeps_every_byte_from_concurrent_writers()
    {
        const int Writers = 4;
        const int PerWriter = 10_000;
        var stream = new MemoryStream();
        using var sink = new StreamSerialSink(stream, leaveOpen: true, bufferSize: 64);

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

        sink.Flush();
        byte[] written = stream.ToArray();
        Assert.Equal(Writers * PerWriter, written.Length);
        for (int t = 0; t < Writers; t++)
        {
            Assert.Equal(PerWriter, written.Count(b => b == 'a' + t));
        }
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

    /// <summary>A MemoryStream whose written byte count can be polled safely from another thread.</summary>
    private sealed class WriteCountingStream : MemoryStream
    {
        private long _bytesWritten;

        public long BytesWritten => Interlocked.Read(ref _bytesWritten);

        public override void Write(byte[] buffer, int offset, int count)
        {
            base.Write(buffer, offset, count);
            Interlocked.Add(ref _bytesWritten, count);
        }
    }
}
