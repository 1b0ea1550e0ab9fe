using KvmSharp.Devices.Events;
using Microsoft.Extensions.Logging;
using Tmds.Linux;
using Xunit;
using static Tmds.Linux.LibC;

namespace KvmSharp.Tests.Unit.Events;

/// <summary>The VM's epoll loop on real eventfds and pipes (no KVM involved).</summary>
public sealed unsafe class EpollEventLoopTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    [Fact]
    public void Posted_work_runs_on_the_named_loop_thread_in_order()
    {
        using var loop = new EpollEventLoop(new RecordingLogger<EpollEventLoop>(), "test-io");
        var seen = new List<(int Value, string? Thread)>();
        using var done = new ManualResetEventSlim();
        for (int i = 0; i < 100; i++)
        {
            int value = i;
            loop.Post(() => seen.Add((value, Thread.CurrentThread.Name)));
        }
        loop.Post(done.Set);
        Assert.True(done.Wait(Wait));
        Assert.Equal(Enumerable.Range(0, 100), seen.Select(s => s.Value));
        Assert.All(seen, s => Assert.Equal("test-io", s.Thread));
    }

    [Fact]
    public void Posts_from_many_threads_all_run()
    {
        using var loop = new EpollEventLoop(new RecordingLogger<EpollEventLoop>());
        int ran = 0;
        using var countdown = new CountdownEvent(8 * 500);
        Parallel.For(0, 8, _ =>
        {
            for (int i = 0; i < 500; i++) loop.Post(() => { ran++; countdown.Signal(); }); // ran++ unsynchronised: only the loop thread runs it
        });
        Assert.True(countdown.Wait(Wait));
        Assert.Equal(8 * 500, ran);
    }

    [Fact]
    public void A_watched_eventfd_calls_back_on_signal_and_not_after_the_watch_is_disposed()
    {
        using var loop = new EpollEventLoop(new RecordingLogger<EpollEventLoop>());
        using var eventFd = EventFd.Create();
        ulong consumed = 0;
        int calls = 0;
        using var fired = new SemaphoreSlim(0);
        var watch = loop.Watch(eventFd, () =>
        {
            Interlocked.Increment(ref calls);
            if (eventFd.TryConsume(out ulong count)) consumed += count;
            fired.Release();
        });
        eventFd.Signal();
        eventFd.Signal();
        Assert.True(fired.Wait(Wait));
        while (Volatile.Read(ref consumed) < 2) Assert.True(fired.Wait(Wait));

        watch.Dispose();
        Flush(loop);
        int callsBefore = Volatile.Read(ref calls);
        eventFd.Signal();
        Flush(loop);
        Thread.Sleep(50);
        Assert.Equal(callsBefore, Volatile.Read(ref calls));
        Assert.True(eventFd.TryConsume(out ulong left)); // the signal stayed in the eventfd: nobody read it
        Assert.Equal(1UL, left);
    }

    [Fact]
    public void A_pipe_with_data_is_reported_readable()
    {
        using var loop = new EpollEventLoop(new RecordingLogger<EpollEventLoop>());
        int* fds = stackalloc int[2];
        Assert.Equal(0, pipe2(fds, O_CLOEXEC | O_NONBLOCK));
        using var readEnd = new FileDescriptorHandle(fds[0]);
        using var writeEnd = new FileDescriptorHandle(fds[1]);
        var received = new List<byte>();
        using var got = new ManualResetEventSlim();
        using var watch = loop.Watch(readEnd, () =>
        {
            byte b;
            while (read(fds[0], &b, 1) == 1) received.Add(b);
            if (received.Count == 3) got.Set();
        });
        byte[] data = [7, 8, 9];
        fixed (byte* p = data) Assert.Equal(3, (int)write(fds[1], p, 3));
        Assert.True(got.Wait(Wait));
        Assert.Equal(data, received);
    }

    [Fact]
    public void A_throwing_callback_is_logged_and_the_loop_keeps_running()
    {
        var logger = new RecordingLogger<EpollEventLoop>();
        using var loop = new EpollEventLoop(logger, "faulty-io");
        loop.Post(() => throw new InvalidOperationException("boom"));
        using var eventFd = EventFd.Create();
        using var watch = loop.Watch(eventFd, () =>
        {
            eventFd.TryConsume(out _);
            throw new InvalidDataException("watch boom");
        });
        eventFd.Signal();
        using var after = new ManualResetEventSlim();
        SpinWait.SpinUntil(() => loop.CallbackFaults == 2, Wait);
        loop.Post(after.Set);
        Assert.True(after.Wait(Wait));
        Assert.Equal(2, loop.CallbackFaults);
        var errors = logger.Entries.Where(e => e.Level == LogLevel.Error).ToList();
        Assert.Equal(2, errors.Count);
        Assert.Contains(errors, e => e.Exception is InvalidOperationException { Message: "boom" } && e.Message.Contains("faulty-io"));
        Assert.Contains(errors, e => e.Exception is InvalidDataException);
    }

    [Fact]
    public void Dispose_joins_the_thread_releases_watched_descriptors_and_refuses_new_work()
    {
        var loop = new EpollEventLoop(new RecordingLogger<EpollEventLoop>(), "stopping-io");
        Thread? loopThread = null;
        using var seen = new ManualResetEventSlim();
        loop.Post(() => { loopThread = Thread.CurrentThread; seen.Set(); });
        Assert.True(seen.Wait(Wait));
        var eventFd = EventFd.Create();
        loop.Watch(eventFd, () => eventFd.TryConsume(out _));
        eventFd.Dispose(); // the watch holds a reference: the descriptor stays open until the loop lets go
        Assert.False(eventFd.IsClosed);

        loop.Dispose();
        Assert.False(loopThread!.IsAlive);
        Assert.True(eventFd.IsClosed);
        Assert.Throws<ObjectDisposedException>(() => loop.Post(() => { }));
        loop.Dispose(); // twice is fine
    }

    [Fact]
    public void An_eventfd_counts_signals_and_reads_empty_as_false()
    {
        using var eventFd = EventFd.Create();
        Assert.False(eventFd.TryConsume(out _));
        for (int i = 0; i < 5; i++) eventFd.Signal();
        Assert.True(eventFd.TryConsume(out ulong count));
        Assert.Equal(5UL, count);
        Assert.False(eventFd.TryConsume(out _));
    }

    private static void Flush(EpollEventLoop loop)
    {
        using var done = new ManualResetEventSlim();
        loop.Post(done.Set);
        Assert.True(done.Wait(Wait));
    }
}
