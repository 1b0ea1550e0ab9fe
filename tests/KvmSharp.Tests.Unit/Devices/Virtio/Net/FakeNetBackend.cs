using System.Runtime.InteropServices;
using KvmSharp.Devices.Events;
using KvmSharp.Devices.Virtio.Net;
using Tmds.Linux;

namespace KvmSharp.Tests.Unit.Devices.Virtio.Net;

/// <summary>A tap in memory: frames queued by the test are received (scattered into the device's vectors), frames the device sends are kept.</summary>
internal sealed unsafe class FakeNetBackend(uint supportedOffloads = TunIoctls.TUN_F_CSUM | TunIoctls.TUN_F_TSO4 | TunIoctls.TUN_F_TSO6 | TunIoctls.TUN_F_TSO_ECN, int mtu = 1500) : INetBackend
{
    private readonly EventFd _handle = EventFd.Create();

    public Queue<byte[]> Incoming { get; } = new();

    public List<byte[]> Sent { get; } = [];

    public List<uint> OffloadCalls { get; } = [];

    /// <summary>Send fails with this errno when set.</summary>
    public int? SendErrno { get; set; }

    public int ReceiveCalls { get; private set; }

    /// <summary>Keep sent frames (off for allocation tests).</summary>
    public bool KeepSent { get; set; } = true;

    public long SentCount { get; private set; }

    public string Name => "faketap0";

    public SafeHandle Handle => _handle;

    public uint SupportedOffloads { get; } = supportedOffloads;

    public int Mtu { get; } = mtu;

    public bool TrySetOffloads(uint offloads, out int errno)
    {
        OffloadCalls.Add(offloads);
        errno = 0;
        return true;
    }

    public nint Receive(iovec* vectors, int count)
    {
        ReceiveCalls++;
        if (!Incoming.TryDequeue(out var frame)) return 0;
        int done = 0;
        for (int i = 0; i < count && done < frame.Length; i++)
        {
            int part = (int)Math.Min((ulong)(frame.Length - done), (ulong)vectors[i].iov_len);
            frame.AsSpan(done, part).CopyTo(new Span<byte>(vectors[i].iov_base, part));
            done += part;
        }

        return frame.Length; // as a tap: the frame's whole length, even when the buffers cut it short
    }

    public nint Send(iovec* vectors, int count)
    {
        if (SendErrno is { } errno) return -errno;
        long total = 0;
        for (int i = 0; i < count; i++) total += (long)(ulong)vectors[i].iov_len;
        SentCount++;
        if (KeepSent)
        {
            var frame = new byte[total];
            int at = 0;
            for (int i = 0; i < count; i++)
            {
                int length = (int)(ulong)vectors[i].iov_len;
                new ReadOnlySpan<byte>(vectors[i].iov_base, length).CopyTo(frame.AsSpan(at));
                at += length;
            }

            Sent.Add(frame);
        }

        return (nint)total;
    }

    public void Dispose() => _handle.Dispose();
}
