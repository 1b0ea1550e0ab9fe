using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using KvmSharp.Devices.Serial;
using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Console;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio;

public sealed class VirtioConsoleTests
{
    private const ushort QueueSize = 16;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    // One driver queue per virtqueue, each in its own 64 KiB of fake RAM.
    private sealed class Rig : IDisposable
    {
        public Rig(VirtioConsole console, bool negotiateMultiport)
        {
            Console = console;
            Memory = new FakeGuestMemory(4 << 20);
            int count = console.QueueMaxSizes.Count;
            Drivers = [.. Enumerable.Range(0, count).Select(i =>
            {
                ulong at = (ulong)i * 0x10000;
                return new DriverQueue(Memory, QueueSize, at, at + 16 * QueueSize, at + 0x1000, i);
            })];
            ulong features = console.AvailableFeatures | VirtioFeatureBits.VIRTIO_F_VERSION_1;
            if (!negotiateMultiport)
            {
                features &= ~(1UL << VirtioConsoleFeatures.VIRTIO_CONSOLE_F_MULTIPORT);
                Drivers = Drivers[..2];
            }

            console.Activate(new VirtioActivation(features, [.. Drivers.Select(d => d.Config)], Memory, Interrupt, Transport));
        }

        public VirtioConsole Console { get; }

        public FakeGuestMemory Memory { get; }

        public DriverQueue[] Drivers { get; }

        public RecordingVirtioInterrupt Interrupt { get; } = new();

        public RecordingTransportStatus Transport { get; } = new();

        private ulong _nextBuffer = 0x200000;

        public ulong Buffer(int size)
        {
            ulong at = _nextBuffer;
            _nextBuffer += (ulong)(size + 15) & ~15UL;
            return at;
        }

        /// <summary>The guest writes <paramref name="text"/> on queue <paramref name="queue"/>.</summary>
        public void Transmit(int queue, string text)
        {
            byte[] bytes = Encoding.ASCII.GetBytes(text);
            ulong at = Buffer(bytes.Length);
            bytes.CopyTo(Memory.At(at, bytes.Length));
            Drivers[queue].AddChain((at, (uint)bytes.Length, false));
            Console.QueueNotify(queue);
        }

        /// <summary>The guest posts a receive buffer on queue <paramref name="queue"/>; returns its address.</summary>
        public ulong PostReceive(int queue, uint size = 64)
        {
            ulong at = Buffer((int)size);
            Drivers[queue].AddChain((at, size, true));
            Console.QueueNotify(queue);
            return at;
        }

        public void SendControl(uint id, VirtioConsoleControlEvent kind, ushort value)
        {
            ulong at = Buffer(8);
            var message = Memory.At(at, 8);
            BinaryPrimitives.WriteUInt32LittleEndian(message, id);
            BinaryPrimitives.WriteUInt16LittleEndian(message[4..], (ushort)kind);
            BinaryPrimitives.WriteUInt16LittleEndian(message[6..], value);
            Drivers[3].AddChain((at, 8, false));
            Console.QueueNotify(3);
        }

        public void Dispose() => Console.Dispose();
    }

    [Fact]
    public void Single_port_console_output_reaches_the_sink_and_typed_input_waits_for_receive_buffers()
    {
        var sink = new CapturingSerialSink();
        using var rig = new Rig(new VirtioConsole(sink, queueSize: QueueSize), negotiateMultiport: false);
        Assert.Equal(0UL, rig.Console.AvailableFeatures & (1UL << VirtioConsoleFeatures.VIRTIO_CONSOLE_F_MULTIPORT));

        rig.Transmit(1, "login: ");
        Assert.Equal("login: ", sink.Text);
        Assert.Equal(1, rig.Drivers[1].UsedIdx);
        Assert.Equal(0u, rig.Drivers[1].UsedElement(0).Length);

        rig.Console.SendInput("root\n"u8);
        Assert.Equal(0, rig.Drivers[0].UsedIdx); // no receive buffer yet: held
        ulong first = rig.PostReceive(0, size: 3);
        ulong second = rig.PostReceive(0, size: 64);
        Assert.Equal(2, rig.Drivers[0].UsedIdx);
        Assert.Equal("roo", Encoding.ASCII.GetString(rig.Memory.At(first, 3)));
        Assert.Equal(2u, rig.Drivers[0].UsedElement(1).Length);
        Assert.Equal("t\n", Encoding.ASCII.GetString(rig.Memory.At(second, 2)));
        Assert.True(rig.Interrupt.QueueNotifications(0) >= 1);

        // A posted buffer waits for the next input.
        ulong third = rig.PostReceive(0);
        Assert.Equal(2, rig.Drivers[0].UsedIdx);
        rig.Console.SendInput("ls\n"u8);
        Assert.Equal(3, rig.Drivers[0].UsedIdx);
        Assert.Equal("ls\n", Encoding.ASCII.GetString(rig.Memory.At(third, 3)));
        Assert.False(rig.Transport.NeedsReset);
        // The metrics' counters: three receive buffers filled (8 bytes), one transmit buffer taken (7 bytes).
        var io = rig.Console.Io;
        Assert.Equal((3, 8, 1, 7), (io.ReadOps, io.ReadBytes, io.WriteOps, io.WriteBytes));
    }

    [Fact]
    public void Emergency_write_is_console_output()
    {
        var sink = new CapturingSerialSink();
        using var console = new VirtioConsole(sink);
        console.WriteConfig(8, [(byte)'!', 0, 0, 0]);
        Assert.Equal("!", sink.Text);
        var config = new byte[12];
        console.ReadConfig(0, config);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(config.AsSpan(4)));
    }

    [Fact]
    public void Multiport_announces_the_console_and_named_ports_and_carries_data_both_ways()
    {
        using var temp = new TempImage(1);
        string log = Path.Combine(temp.Root, "port.log");
        string socketPath = Path.Combine(temp.Root, "port.sock");
        var sink = new CapturingSerialSink();
        var ports = new[] { ConsolePortSpec.Parse($"name=log.port,path={log}").Open(), ConsolePortSpec.Parse($"name=agent,socket={socketPath}").Open() };
        using var rig = new Rig(new VirtioConsole(sink, ports, queueSize: QueueSize), negotiateMultiport: true);
        var config = new byte[12];
        rig.Console.ReadConfig(0, config);
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(config.AsSpan(4)));

        // The driver's handshake: control buffers, DEVICE_READY; the device adds ports 0..2.
        var controlBuffers = Enumerable.Range(0, 12).Select(_ => rig.PostReceive(2, 64)).ToArray();
        rig.SendControl(0, VirtioConsoleControlEvent.VIRTIO_CONSOLE_DEVICE_READY, 1);
        var messages = ReadControl(rig, controlBuffers);
        Assert.Equal(["0:PORT_ADD:0", "1:PORT_ADD:0", "2:PORT_ADD:0"], messages);

        for (uint port = 0; port < 3; port++)
        {
            rig.SendControl(port, VirtioConsoleControlEvent.VIRTIO_CONSOLE_PORT_READY, 1);
        }

        messages = ReadControl(rig, controlBuffers);
        Assert.Equal(
            ["0:PORT_ADD:0", "1:PORT_ADD:0", "2:PORT_ADD:0", "0:CONSOLE_PORT:1", "0:PORT_OPEN:1", "1:PORT_NAME:1=log.port", "1:PORT_OPEN:1", "2:PORT_NAME:1=agent"],
            messages);

        // Port 0 is the console on queues 0/1; port 1 (file) on 4/5; port 2 (socket) on 6/7.
        rig.Transmit(1, "hvc0 says hi\n");
        Assert.Equal("hvc0 says hi\n", sink.Text);
        rig.Transmit(5, "to the file\n");
        rig.Console.Dispose(); // flushes and closes the port's file
        Assert.Equal("to the file\n", File.ReadAllText(log));
        Assert.False(rig.Transport.NeedsReset);
    }

    [Fact]
    public void A_socket_port_connects_one_client_both_ways_and_tells_the_guest()
    {
        using var temp = new TempImage(1);
        string socketPath = Path.Combine(temp.Root, "agent.sock");
        var ports = new[] { ConsolePortSpec.Parse($"name=agent,socket={socketPath}").Open() };
        using var rig = new Rig(new VirtioConsole(new CapturingSerialSink(), ports, queueSize: QueueSize), negotiateMultiport: true);
        var controlBuffers = Enumerable.Range(0, 12).Select(_ => rig.PostReceive(2, 64)).ToArray();
        rig.SendControl(0, VirtioConsoleControlEvent.VIRTIO_CONSOLE_DEVICE_READY, 1);
        rig.SendControl(1, VirtioConsoleControlEvent.VIRTIO_CONSOLE_PORT_READY, 1);
        Assert.DoesNotContain("1:PORT_OPEN:1", ReadControl(rig, controlBuffers));

        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(socketPath));
        Assert.True(SpinWait.SpinUntil(() => ReadControl(rig, controlBuffers).Contains("1:PORT_OPEN:1"), Timeout));

        // Client to guest.
        ulong receive = rig.PostReceive(4, 64);
        client.Send("ping"u8);
        Assert.True(SpinWait.SpinUntil(() => rig.Drivers[4].UsedIdx == 1, Timeout));
        Assert.Equal("ping", Encoding.ASCII.GetString(rig.Memory.At(receive, 4)));

        // Guest to client.
        rig.Transmit(5, "pong");
        var reply = new byte[4];
        client.ReceiveTimeout = (int)Timeout.TotalMilliseconds;
        int got = 0;
        while (got < 4)
        {
            got += client.Receive(reply.AsSpan(got));
        }

        Assert.Equal("pong", Encoding.ASCII.GetString(reply));

        client.Shutdown(SocketShutdown.Both);
        client.Close();
        Assert.True(SpinWait.SpinUntil(() => ReadControl(rig, controlBuffers).Contains("1:PORT_OPEN:0"), Timeout));
    }

    [Fact]
    public void A_hostile_transmit_chain_makes_the_console_need_a_reset()
    {
        using var rig = new Rig(new VirtioConsole(new CapturingSerialSink(), queueSize: QueueSize), negotiateMultiport: false);
        rig.Drivers[1].WriteDescriptor(0, 0x300000, 8, KvmSharp.Devices.Virtio.Queues.VringFlags.VRING_DESC_F_NEXT, 0);
        rig.Drivers[1].Publish(0);
        rig.Console.QueueNotify(1);
        Assert.Contains("DescriptorLoop", rig.Transport.Reasons.Single());
        Assert.True(rig.Memory.GuardsIntact());
    }

    // Every control message the device has put in the receive buffers so far, as "id:EVENT:value[=name]".
    private static List<string> ReadControl(Rig rig, ulong[] buffers)
    {
        var driver = rig.Drivers[2];
        var messages = new List<string>();
        for (ushort i = 0; i < driver.UsedIdx; i++)
        {
            var (id, length) = driver.UsedElement(i);
            var message = rig.Memory.At(buffers[id], (int)length);
            string text = $"{BinaryPrimitives.ReadUInt32LittleEndian(message)}:{((VirtioConsoleControlEvent)BinaryPrimitives.ReadUInt16LittleEndian(message[4..])).ToString()["VIRTIO_CONSOLE_".Length..]}:{BinaryPrimitives.ReadUInt16LittleEndian(message[6..])}";
            if (length > 8)
            {
                text += "=" + Encoding.ASCII.GetString(message[8..]);
            }

            messages.Add(text);
        }

        return messages;
    }
}
