using System.Net.Sockets;
using System.Runtime.InteropServices;
using KvmSharp.Devices.Events;
using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Vsock;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio.Vsock;

/// <summary>An event loop the test turns by hand: <see cref="Pump"/> runs every watch callback once, on the test's thread.</summary>
internal sealed class ManualEventLoop : IEventLoop
{
    private readonly List<(SafeHandle Fd, Action Callback, bool[] Live)> _watches = [];

    public void Post(Action work) => work();

    public IDisposable Watch(SafeHandle fd, Action onReadable)
    {
        var live = new[] { true };
        _watches.Add((fd, onReadable, live));
        return new Unwatch(live);
    }

    /// <summary>Serve whatever is ready (a few turns: one event can make another ready).</summary>
    public void Pump(int turns = 3)
    {
        for (int i = 0; i < turns; i++)
        {
            for (int w = 0; w < _watches.Count; w++)
            {
                if (_watches[w].Live[0])
                {
                    _watches[w].Callback();
                }
            }
        }
    }

    private sealed class Unwatch(bool[] live) : IDisposable
    {
        public void Dispose() => live[0] = false;
    }
}

/// <summary>A guest packet as the rig's driver reads it from the receive queue.</summary>
internal readonly record struct GuestPacket(virtio_vsock_hdr Header, byte[] Payload)
{
    public VirtioVsockOp Op => (VirtioVsockOp)Header.op;
}

/// <summary>
/// virtio-vsock over fake guest memory with a hand-written driver (receive buffers of a 44-byte header
/// descriptor plus a 4 KiB buffer, as Linux 6.1 posts them; transmit chains of header + payload), a
/// manual event loop, and the real unix sockets in a private temporary directory.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
internal sealed class VsockRig : IDisposable
{
    public const uint GuestCid = 3;
    public const ushort QueueSize = 256;
    private const ulong RxRings = 0x0;
    private const ulong TxRings = 0x4000;
    private const ulong EventRings = 0x8000;
    private readonly Dictionary<ushort, (ulong Header, ulong Buffer)> _rxBuffers = [];
    private ushort _rxSeen;
    private ushort _eventSeen;
    private ulong _nextBuffer = 0x10000;
    private ulong _nextTx = 0x200000;

    public VsockRig(uint bufferBytes = VirtioVsock.DefaultBufferBytes, int maxConnections = 16, bool activate = true)
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("kvmsharp-vsock-");
        File.SetUnixFileMode(Directory.FullName, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        SocketPath = Path.Combine(Directory.FullName, "v.sock");
        Memory = new FakeGuestMemory(4 << 20);
        Rx = new DriverQueue(Memory, QueueSize, RxRings, RxRings + 16 * QueueSize, RxRings + 0x2000, 0);
        Tx = new DriverQueue(Memory, QueueSize, TxRings, TxRings + 16 * QueueSize, TxRings + 0x2000, 1);
        Events = new DriverQueue(Memory, QueueSize, EventRings, EventRings + 16 * QueueSize, EventRings + 0x2000, 2);
        Device = new VirtioVsock(new VsockSpec(GuestCid, SocketPath), Loop, queueSize: QueueSize, bufferBytes: bufferBytes, maxConnections: maxConnections);
        if (activate)
        {
            Activate();
        }
    }

    public DirectoryInfo Directory { get; }
    public string SocketPath { get; }
    public FakeGuestMemory Memory { get; }
    public DriverQueue Rx { get; }
    public DriverQueue Tx { get; }
    public DriverQueue Events { get; }
    public ManualEventLoop Loop { get; } = new();
    public VirtioVsock Device { get; }
    public RecordingVirtioInterrupt Interrupt { get; } = new();
    public RecordingTransportStatus Transport { get; } = new();

    public void Activate()
    {
        Device.Activate(new VirtioActivation(Device.AvailableFeatures | VirtioFeatureBits.VIRTIO_F_VERSION_1,
            [Rx.Config, Tx.Config, Events.Config], Memory, Interrupt, Transport));
    }

    /// <summary>Post <paramref name="count"/> receive buffers and kick.</summary>
    public void PostRx(int count = 8, uint bufferBytes = 4096, bool kick = true)
    {
        for (int i = 0; i < count; i++)
        {
            ulong header = _nextBuffer;
            ulong buffer = header + 64;
            _nextBuffer += 64 + bufferBytes + 64;
            if (_nextBuffer + 64 + bufferBytes + 64 > 0x1F0000)
            {
                _nextBuffer = 0x10000; // long used by then: a test keeps few buffers posted
            }
            ushort head = Rx.AddChain((header, (uint)virtio_vsock_hdr.Size, true), (buffer, bufferBytes, true));
            _rxBuffers[head] = (header, buffer);
        }

        if (kick)
        {
            Device.QueueNotify(0);
        }
    }

    /// <summary>The packets the device put in the receive queue since the last call.</summary>
    public List<GuestPacket> TakeRx()
    {
        var packets = new List<GuestPacket>();
        while (_rxSeen != Rx.UsedIdx)
        {
            var (id, length) = Rx.UsedElement(_rxSeen++);
            var (header, buffer) = _rxBuffers[(ushort)id];
            var hdr = MemoryMarshal.Read<virtio_vsock_hdr>(Memory.At(header, virtio_vsock_hdr.Size));
            Assert.Equal(virtio_vsock_hdr.Size + hdr.len, length);
            packets.Add(new GuestPacket(hdr, Memory.At(buffer, (int)hdr.len).ToArray()));
        }

        return packets;
    }

    /// <summary>Event ids the device wrote since the last call (the driver posts the buffers with <see cref="PostEvents"/>).</summary>
    public List<uint> TakeEvents()
    {
        var ids = new List<uint>();
        while (_eventSeen != Events.UsedIdx)
        {
            var (id, length) = Events.UsedElement(_eventSeen++);
            Assert.Equal(4u, length);
            ids.Add(MemoryMarshal.Read<uint>(Memory.At(0x300000 + 16 * id, 4)));
        }

        return ids;
    }

    public void PostEvents(int count = 4)
    {
        for (int i = 0; i < count; i++)
        {
            ushort head = (ushort)((Events.AvailIdx) % QueueSize);
            Events.WriteDescriptor(head, 0x300000 + 16UL * head, 4, KvmSharp.Devices.Virtio.Queues.VringFlags.VRING_DESC_F_WRITE, 0);
            Events.Publish(head);
        }

        Device.QueueNotify(2);
    }

    public static virtio_vsock_hdr Header(VirtioVsockOp op, uint guestPort, uint hostPort, uint length = 0, uint bufAlloc = 65536, uint fwdCnt = 0, uint flags = 0) => new()
    {
        src_cid = GuestCid,
        dst_cid = VirtioVsock.HostCid,
        src_port = guestPort,
        dst_port = hostPort,
        len = length,
        type = (ushort)VirtioVsockType.VIRTIO_VSOCK_TYPE_STREAM,
        op = (ushort)op,
        flags = flags,
        buf_alloc = bufAlloc,
        fwd_cnt = fwdCnt,
    };

    /// <summary>The driver sends one packet (header descriptor, then the payload's) and kicks.</summary>
    public void SendTx(virtio_vsock_hdr header, ReadOnlySpan<byte> payload = default, bool kick = true)
    {
        ulong at = _nextTx;
        _nextTx += 64 + (ulong)payload.Length + 64;
        if (_nextTx > 0x3F0000)
        {
            _nextTx = 0x200000;
        }

        MemoryMarshal.Write(Memory.At(at, virtio_vsock_hdr.Size), header);
        payload.CopyTo(Memory.At(at + 64, payload.Length));
        if (payload.Length > 0)
        {
            Tx.AddChain((at, (uint)virtio_vsock_hdr.Size, false), (at + 64, (uint)payload.Length, false));
        }
        else
        {
            Tx.AddChain((at, (uint)virtio_vsock_hdr.Size, false));
        }

        if (kick)
        {
            Device.QueueNotify(1);
        }
    }

    /// <summary>A host client on the hybrid socket, connected and with its CONNECT line sent.</summary>
    public Socket ConnectClient(uint guestPort)
    {
        var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 2000 };
        client.Connect(new UnixDomainSocketEndPoint(SocketPath));
        client.Send(System.Text.Encoding.ASCII.GetBytes($"CONNECT {guestPort}\n"));
        Loop.Pump();
        return client;
    }

    /// <summary>Read a line (up to \n) from a client socket.</summary>
    public static string ReadLine(Socket client)
    {
        var line = new List<byte>();
        var one = new byte[1];
        while (client.Receive(one) == 1 && one[0] != '\n')
        {
            line.Add(one[0]);
        }

        return System.Text.Encoding.ASCII.GetString([.. line]);
    }

    /// <summary>Read exactly <paramref name="count"/> bytes (or what arrives before EOF/timeout).</summary>
    public static byte[] ReadExactly(Socket client, int count)
    {
        var data = new byte[count];
        int done = 0;
        try
        {
            while (done < count)
            {
                int got = client.Receive(data, done, count - done, SocketFlags.None);
                if (got == 0)
                {
                    break;
                }

                done += got;
            }
        }
        catch (SocketException)
        {
        }

        return data[..done];
    }

    /// <summary>Whether the peer closed the client's socket (EOF or reset) within the receive timeout.</summary>
    public static bool IsClosedByPeer(Socket client)
    {
        try
        {
            var buffer = new byte[64];
            while (true)
            {
                int got = client.Receive(buffer);
                if (got == 0)
                {
                    return true;
                }
            }
        }
        catch (SocketException e)
        {
            return e.SocketErrorCode is SocketError.ConnectionReset or SocketError.Shutdown;
        }
    }

    public void Dispose()
    {
        Device.Dispose();
        try
        {
            Directory.Delete(recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
