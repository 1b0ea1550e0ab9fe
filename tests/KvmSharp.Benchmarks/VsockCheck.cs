using System.Diagnostics;
using System.Net.Sockets;
using System.Text;

namespace KvmSharp.Benchmarks;

/// <summary>
/// The host side of tests/testbed/vsock-tests.sh (`kvmsharp-bench vsock-check SOCKET [MIB [SECONDS]]`),
/// against the guest program tests/testbed/vsock-guest.c and a `kvmsharp run --vsock cid=N,socket=SOCKET`
/// started after it: listens on SOCKET_6000 and SOCKET_6001 for the guest's connections, then, through
/// Firecracker's CONNECT protocol on SOCKET, checks echo, MIB MiB both ways with the content compared,
/// 100 connections open at once, a refused port, and abrupt closes on both sides. One "ok:"/"FAIL:"
/// line per check, then "vsock-check: all passed" (exit 0) or "vsock-check: N failed" (exit 1).
/// </summary>
internal static class VsockCheck
{
    private const ulong SeedGuest = 0x5EED0001;
    private const ulong SeedHost = 0x5EED0002;
    private const ulong SeedEcho = 0x5EED0003;
    private const int Chunk = 64 * 1024;
    private static int s_failed;

    public static int Run(string socketPath, int mib, int seconds)
    {
        long bytes = (long)mib << 20;
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        using var guestOut = Listen(socketPath + "_6000");
        using var guestAbrupt = Listen(socketPath + "_6001");
        Console.WriteLine($"vsock-check: listening on {socketPath}_6000 and _6001");
        var outgoing = Task.Run(() => GuestToHost(guestOut, bytes, deadline));
        var abrupt = Task.Run(() => GuestAbruptClose(guestAbrupt, deadline));

        // The guest is up once its echo port answers.
        Socket? echo = null;
        while (echo is null && DateTime.UtcNow < deadline)
        {
            echo = TryConnect(socketPath, 5000, out _);
            if (echo is null)
            {
                Thread.Sleep(500);
            }
        }

        if (echo is null)
        {
            Check(false, "echo", "no OK from the guest's port 5000 before the deadline");
            return Finish(outgoing, abrupt);
        }

        using (echo)
        {
            echo.Send("hello vsock\n"u8);
            string back = Encoding.ASCII.GetString(ReadExactly(echo, 12));
            Check(back == "hello vsock\n", "echo", $"sent 'hello vsock', read back '{back.TrimEnd()}'");
        }

        using (var bulk = TryConnect(socketPath, 5000, out string why))
        {
            if (bulk is null)
            {
                Check(false, "bulk-echo", why);
            }
            else
            {
                var clock = Stopwatch.StartNew();
                var writer = Task.Run(() => WriteStream(bulk, SeedEcho, bytes, shutdown: true));
                var (received, mismatches) = ReadStream(bulk, SeedEcho);
                bool wrote = writer.Wait(TimeSpan.FromSeconds(Math.Max(1, (deadline - DateTime.UtcNow).TotalSeconds))) && writer.Result;
                double mibPerSecond = mib / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
                Check(wrote && received == bytes && mismatches == 0, "bulk-echo",
                    $"{mib} MiB to the guest and back in {clock.Elapsed.TotalSeconds:F1} s ({mibPerSecond:F1} MiB/s each way): received {received} bytes, {mismatches} differ");
            }
        }

        Guarded("concurrent-connections", () => ConcurrentConnections(socketPath, 100));
        Guarded("refused-port", () => Refused(socketPath));
        Guarded("host-abrupt-close", () => HostAbruptClose(socketPath));
        Guarded("guest-closes-host-connection", () => GuestClosesOnHost(socketPath));
        Finish(outgoing, abrupt, awaitOnly: true);

        using (var quit = TryConnect(socketPath, 5002, out string quitWhy))
        {
            Check(quit is not null, "quit", quit is null ? quitWhy : "the guest program was told to end");
        }

        return Finish(outgoing, abrupt);
    }

    // A check that throws fails with the exception's message; the others still run.
    private static void Guarded(string name, Action check)
    {
        try
        {
            check();
        }
        catch (Exception e) when (e is SocketException or IOException or AggregateException or ObjectDisposedException)
        {
            Check(false, name, $"{e.GetType().Name}: {e.Message}");
        }
    }

    private static int Finish(Task outgoing, Task abrupt, bool awaitOnly = false)
    {
        Task.WaitAll([outgoing, abrupt], TimeSpan.FromMinutes(30));
        if (awaitOnly)
        {
            return 0;
        }

        Console.WriteLine(s_failed == 0 ? "vsock-check: all passed" : $"vsock-check: {s_failed} failed");
        return s_failed == 0 ? 0 : 1;
    }

    private static void Check(bool ok, string name, string detail)
    {
        if (!ok)
        {
            Interlocked.Increment(ref s_failed);
        }

        lock (Console.Out)
        {
            Console.WriteLine($"{(ok ? "ok" : "FAIL")}: {name} ({detail})");
        }
    }

    private static Socket Listen(string path)
    {
        File.Delete(path);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(16);
        return listener;
    }

    /// <summary>CONNECT port on the hybrid socket: the connected socket after "OK hostport", or null with why not.</summary>
    private static Socket? TryConnect(string socketPath, int port, out string why)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 120_000, SendTimeout = 120_000 };
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(socketPath));
            socket.Send(Encoding.ASCII.GetBytes($"CONNECT {port}\n"));
            string line = ReadLine(socket);
            if (line.StartsWith("OK ", StringComparison.Ordinal) && uint.TryParse(line.AsSpan(3), out _))
            {
                why = "";
                return socket;
            }

            why = line.Length == 0 ? "closed without OK" : $"answered '{line}'";
        }
        catch (SocketException e)
        {
            why = e.Message;
        }

        socket.Dispose();
        return null;
    }

    private static string ReadLine(Socket socket)
    {
        var line = new StringBuilder();
        var one = new byte[1];
        while (socket.Receive(one) == 1 && one[0] != '\n')
        {
            line.Append((char)one[0]);
        }

        return line.ToString();
    }

    private static byte[] ReadExactly(Socket socket, int count)
    {
        var data = new byte[count];
        int done = 0;
        while (done < count)
        {
            int got = socket.Receive(data, done, count - done, SocketFlags.None);
            if (got == 0)
            {
                break;
            }

            done += got;
        }

        return data[..done];
    }

    private static bool WriteStream(Socket socket, ulong seed, long bytes, bool shutdown)
    {
        try
        {
            var stream = new TestStream(seed);
            var buffer = new byte[Chunk];
            for (long done = 0; done < bytes;)
            {
                int n = (int)Math.Min(Chunk, bytes - done);
                stream.Fill(buffer.AsSpan(0, n));
                socket.Send(buffer.AsSpan(0, n));
                done += n;
            }

            if (shutdown)
            {
                socket.Shutdown(SocketShutdown.Send);
            }

            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    // Everything until EOF, compared with the stream seeded seed: (bytes, bytes that differ).
    private static (long Received, long Mismatches) ReadStream(Socket socket, ulong seed)
    {
        var stream = new TestStream(seed);
        var buffer = new byte[Chunk];
        var expected = new byte[Chunk];
        long received = 0, mismatches = 0;
        try
        {
            while (true)
            {
                int got = socket.Receive(buffer);
                if (got == 0)
                {
                    break;
                }

                stream.Fill(expected.AsSpan(0, got));
                for (int i = 0; i < got; i++)
                {
                    mismatches += buffer[i] != expected[i] ? 1 : 0;
                }

                received += got;
            }
        }
        catch (SocketException)
        {
        }

        return (received, mismatches);
    }

    private static void GuestToHost(Socket listener, long bytes, DateTime deadline)
    {
        if (!listener.Poll(TimeSpan.FromSeconds(Math.Max(1, (deadline - DateTime.UtcNow).TotalSeconds)), SelectMode.SelectRead))
        {
            Check(false, "guest-to-host", "the guest never connected to port 6000");
            return;
        }

        using var socket = listener.Accept();
        socket.ReceiveTimeout = socket.SendTimeout = 120_000;
        var clock = Stopwatch.StartNew();
        var writer = Task.Run(() => WriteStream(socket, SeedHost, bytes, shutdown: true));
        var (received, mismatches) = ReadStream(socket, SeedGuest);
        bool wrote = writer.Wait(TimeSpan.FromMinutes(20)) && writer.Result;
        double seconds = clock.Elapsed.TotalSeconds;
        Check(received == bytes && mismatches == 0, "guest-to-host",
            $"guest-initiated connection to port 6000: received {received} of {bytes} bytes, {mismatches} differ, {bytes / 1048576.0 / Math.Max(seconds, 1e-9):F1} MiB/s");
        Check(wrote, "host-to-guest", $"{bytes} bytes sent on the guest's connection (the guest compares them: KVMSHARP-VSOCK-OUT on its console)");
    }

    private static void GuestAbruptClose(Socket listener, DateTime deadline)
    {
        if (!listener.Poll(TimeSpan.FromSeconds(Math.Max(1, (deadline - DateTime.UtcNow).TotalSeconds)), SelectMode.SelectRead))
        {
            Check(false, "guest-abrupt-close", "the guest never connected to port 6001");
            return;
        }

        using var socket = listener.Accept();
        socket.ReceiveTimeout = 60_000;
        long received = 0;
        bool ended;
        try
        {
            // Keep sending while reading: the guest closes with these bytes unread.
            socket.Send(new byte[4096]);
            var buffer = new byte[Chunk];
            int got;
            while ((got = socket.Receive(buffer)) > 0)
            {
                received += got;
            }

            ended = true;
        }
        catch (SocketException e)
        {
            ended = e.SocketErrorCode is SocketError.ConnectionReset or SocketError.Shutdown;
        }

        Check(ended && received <= 1 << 20, "guest-abrupt-close", $"the guest wrote {received} bytes and closed; the host's socket ended");
    }

    private static void ConcurrentConnections(string socketPath, int count)
    {
        var clock = Stopwatch.StartNew();
        var sockets = new Socket?[count];
        Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = 16 }, i => sockets[i] = TryConnect(socketPath, 5000, out _));
        int open = sockets.Count(s => s is not null);
        // All open at once; each carries its own stream.
        var results = new (long Received, long Mismatches)[count];
        Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = 16 }, i =>
        {
            if (sockets[i] is not { } socket)
            {
                return;
            }

            var writer = Task.Run(() => WriteStream(socket, SeedEcho + 100 + (ulong)i, 64 * 1024, shutdown: true));
            results[i] = ReadStream(socket, SeedEcho + 100 + (ulong)i);
            writer.Wait();
        });
        foreach (var socket in sockets)
        {
            socket?.Dispose();
        }

        int intact = results.Count(r => r.Received == 64 * 1024 && r.Mismatches == 0);
        Check(open == count && intact == count, "concurrent-connections",
            $"{open} of {count} connections open at once, {intact} echoed their 64 KiB intact, in {clock.Elapsed.TotalSeconds:F1} s");
    }

    private static void Refused(string socketPath)
    {
        using var socket = TryConnect(socketPath, 5999, out string why);
        Check(socket is null && why == "closed without OK", "refused-port", $"CONNECT to a port nobody listens on: {(socket is null ? why : "got OK")}");
    }

    private static void HostAbruptClose(string socketPath)
    {
        var socket = TryConnect(socketPath, 5000, out string why);
        if (socket is null)
        {
            Check(false, "host-abrupt-close", why);
            return;
        }

        // Fill what the buffers take (the echo comes back unread, so a blocking 1 MiB send would wait
        // for ever), then close with all of that in flight.
        socket.Blocking = false;
        var chunk = new byte[Chunk];
        long inFlight = 0;
        var until = DateTime.UtcNow.AddSeconds(5);
        while (inFlight < 1 << 20 && DateTime.UtcNow < until)
        {
            try
            {
                inFlight += socket.Send(chunk);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
            {
                Thread.Sleep(50);
            }
        }

        socket.Close(0); // with the echo unread
        using var after = TryConnect(socketPath, 5000, out why);
        string back = "";
        if (after is not null)
        {
            after.Send("still here\n"u8);
            back = Encoding.ASCII.GetString(ReadExactly(after, 11));
        }

        Check(back == "still here\n", "host-abrupt-close", $"closed a connection with {inFlight >> 10} KiB in flight; a new echo afterwards {(back == "still here\n" ? "works" : $"failed: {why}")}");
    }

    private static void GuestClosesOnHost(string socketPath)
    {
        using var socket = TryConnect(socketPath, 5001, out string why);
        if (socket is null)
        {
            Check(false, "guest-closes-host-connection", why);
            return;
        }

        socket.ReceiveTimeout = 30_000;
        bool ended;
        try
        {
            socket.Send(new byte[4096]);
            ended = socket.Receive(new byte[16]) == 0;
        }
        catch (SocketException e)
        {
            ended = e.SocketErrorCode is SocketError.ConnectionReset or SocketError.Shutdown or SocketError.ConnectionAborted;
        }

        Check(ended, "guest-closes-host-connection", $"the guest closed after 1 byte of 4 KiB: the host's socket {(ended ? "ended" : "did NOT end")}");
    }

    /// <summary>The test stream of vsock-guest.c: xorshift64 words, little-endian, byte by byte.</summary>
    private sealed class TestStream(ulong seed)
    {
        private ulong _state = seed;
        private ulong _word;
        private int _used = 8;

        public void Fill(Span<byte> buffer)
        {
            for (int i = 0; i < buffer.Length; i++)
            {
                if (_used == 8)
                {
                    ulong x = _state;
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    _state = _word = x;
                    _used = 0;
                }

                buffer[i] = (byte)(_word >> (8 * _used++));
            }
        }
    }
}
