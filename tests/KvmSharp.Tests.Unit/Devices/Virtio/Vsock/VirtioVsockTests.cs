using System.Net.Sockets;
using System.Text;
using KvmSharp.Devices.Virtio.Vsock;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio.Vsock;

[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class VirtioVsockTests
{
    private static (GuestPacket Request, uint HostPort) AcceptedHostConnection(VsockRig rig, Socket client, uint guestPort, uint guestBufAlloc = 65536)
    {
        var request = Assert.Single(rig.TakeRx());
        Assert.Equal(VirtioVsockOp.VIRTIO_VSOCK_OP_REQUEST, request.Op);
        Assert.Equal(guestPort, request.Header.dst_port);
        uint hostPort = request.Header.src_port;
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_RESPONSE, guestPort, hostPort, bufAlloc: guestBufAlloc));
        Assert.Equal($"OK {hostPort}", VsockRig.ReadLine(client));
        return (request, hostPort);
    }

    [Fact]
    public void A_host_CONNECT_becomes_a_guest_REQUEST_then_OK_and_bytes_flow_both_ways()
    {
        using var rig = new VsockRig();
        rig.PostRx();
        using var client = rig.ConnectClient(1234);

        var (request, hostPort) = AcceptedHostConnection(rig, client, 1234);
        Assert.Equal(VirtioVsock.HostCid, request.Header.src_cid);
        Assert.Equal(VsockRig.GuestCid, request.Header.dst_cid);
        Assert.True(hostPort >= VirtioVsock.FirstHostPort);
        Assert.Equal(VirtioVsock.DefaultBufferBytes, request.Header.buf_alloc);

        client.Send("hello guest"u8);
        rig.Loop.Pump();
        var data = Assert.Single(rig.TakeRx());
        Assert.Equal(VirtioVsockOp.VIRTIO_VSOCK_OP_RW, data.Op);
        Assert.Equal("hello guest", Encoding.ASCII.GetString(data.Payload));
        Assert.Equal(hostPort, data.Header.src_port);
        Assert.Equal(1234u, data.Header.dst_port);

        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_RW, 1234, hostPort, 10), "hello host"u8);
        Assert.Equal("hello host", Encoding.ASCII.GetString(VsockRig.ReadExactly(client, 10)));
        Assert.False(rig.Transport.NeedsReset);
        Assert.True(rig.Memory.GuardsIntact());
    }

    [Fact]
    public void Bytes_a_client_sends_right_after_its_CONNECT_line_reach_the_guest_after_the_OK()
    {
        using var rig = new VsockRig();
        rig.PostRx();
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 2000 };
        client.Connect(new UnixDomainSocketEndPoint(rig.SocketPath));
        client.Send("CONNECT 77\nearly bytes"u8);
        rig.Loop.Pump();
        AcceptedHostConnection(rig, client, 77);
        rig.Loop.Pump();
        Assert.Equal("early bytes", Encoding.ASCII.GetString(Assert.Single(rig.TakeRx()).Payload));
    }

    [Fact]
    public void A_guest_RST_to_a_host_CONNECT_closes_the_client()
    {
        using var rig = new VsockRig();
        rig.PostRx();
        using var client = rig.ConnectClient(99);
        var request = Assert.Single(rig.TakeRx());
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_RST, 99, request.Header.src_port));
        Assert.True(VsockRig.IsClosedByPeer(client));
        Assert.Equal(0, rig.Device.OpenConnections);
    }

    [Theory]
    [InlineData("HELLO 5\n")]
    [InlineData("CONNECT x\n")]
    [InlineData("CONNECT 99999999999\n")]
    [InlineData("CONNECT 5 6 7 8 9 10 11 12 13 14 15 16 17\n")]
    public void A_client_without_a_valid_CONNECT_line_is_closed_and_the_guest_hears_nothing(string line)
    {
        using var rig = new VsockRig();
        rig.PostRx();
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 2000 };
        client.Connect(new UnixDomainSocketEndPoint(rig.SocketPath));
        client.Send(Encoding.ASCII.GetBytes(line));
        rig.Loop.Pump();
        Assert.True(VsockRig.IsClosedByPeer(client));
        Assert.Empty(rig.TakeRx());
        Assert.Equal(0, rig.Device.OpenConnections);
    }

    [Fact]
    public void A_CONNECT_before_the_driver_is_ready_is_closed()
    {
        using var rig = new VsockRig(activate: false);
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 2000 };
        client.Connect(new UnixDomainSocketEndPoint(rig.SocketPath));
        rig.Loop.Pump();
        Assert.True(VsockRig.IsClosedByPeer(client));
    }

    [Fact]
    public void A_guest_connection_to_port_P_goes_to_PATH_P_and_bytes_flow_both_ways()
    {
        using var rig = new VsockRig();
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(rig.SocketPath + "_5000"));
        listener.Listen();
        rig.PostRx();

        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_REQUEST, 40000, 5000));
        var response = Assert.Single(rig.TakeRx());
        Assert.Equal(VirtioVsockOp.VIRTIO_VSOCK_OP_RESPONSE, response.Op);
        Assert.Equal(5000u, response.Header.src_port);
        Assert.Equal(40000u, response.Header.dst_port);
        using var server = listener.Accept();
        server.ReceiveTimeout = 2000;

        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_RW, 40000, 5000, 4), "ping"u8);
        Assert.Equal("ping", Encoding.ASCII.GetString(VsockRig.ReadExactly(server, 4)));
        server.Send("pong"u8);
        rig.Loop.Pump();
        Assert.Equal("pong", Encoding.ASCII.GetString(Assert.Single(rig.TakeRx()).Payload));
    }

    [Fact]
    public void A_guest_connection_to_a_port_nobody_listens_on_is_reset()
    {
        using var rig = new VsockRig();
        rig.PostRx();
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_REQUEST, 40001, 6000));
        var reset = Assert.Single(rig.TakeRx());
        Assert.Equal(VirtioVsockOp.VIRTIO_VSOCK_OP_RST, reset.Op);
        Assert.Equal(6000u, reset.Header.src_port);
        Assert.Equal(40001u, reset.Header.dst_port);
        Assert.Equal(0, rig.Device.OpenConnections);
    }

    [Fact]
    public void Packets_for_unknown_connections_get_RST_and_an_RST_for_one_gets_nothing()
    {
        using var rig = new VsockRig();
        rig.PostRx();
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_RW, 1, 2, 3), "abc"u8);
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_RST, 1, 2));
        var wrongCid = VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_REQUEST, 1, 2);
        wrongCid.dst_cid = 7;
        rig.SendTx(wrongCid);
        var packets = rig.TakeRx();
        Assert.Equal(2, packets.Count);
        Assert.All(packets, p => Assert.Equal(VirtioVsockOp.VIRTIO_VSOCK_OP_RST, p.Op));
        Assert.False(rig.Transport.NeedsReset);
    }

    [Fact]
    public void Host_bytes_never_exceed_the_guests_credit_and_a_credit_update_releases_more()
    {
        using var rig = new VsockRig();
        rig.PostRx(16);
        using var client = rig.ConnectClient(80);
        var (_, hostPort) = AcceptedHostConnection(rig, client, 80, guestBufAlloc: 100);

        client.Send(new byte[250]);
        rig.Loop.Pump();
        var packets = rig.TakeRx();
        Assert.Equal(100, packets.Where(p => p.Op == VirtioVsockOp.VIRTIO_VSOCK_OP_RW).Sum(p => p.Payload.Length));
        Assert.Contains(packets, p => p.Op == VirtioVsockOp.VIRTIO_VSOCK_OP_CREDIT_REQUEST);

        // The guest read 60 bytes: 60 more may come.
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_CREDIT_UPDATE, 80, hostPort, bufAlloc: 100, fwdCnt: 60));
        rig.Loop.Pump();
        Assert.Equal(60, rig.TakeRx().Where(p => p.Op == VirtioVsockOp.VIRTIO_VSOCK_OP_RW).Sum(p => p.Payload.Length));
        var connection = rig.Device.FindConnection(hostPort, 80)!;
        Assert.Equal(160u, connection.SentCount);
        Assert.Equal(0u, connection.PeerCredit);
    }

    [Fact]
    public void Forwarding_a_quarter_of_the_buffer_sends_a_credit_update_with_the_new_fwd_cnt()
    {
        using var rig = new VsockRig(bufferBytes: 16384);
        rig.PostRx();
        using var client = rig.ConnectClient(81);
        var (_, hostPort) = AcceptedHostConnection(rig, client, 81);
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_RW, 81, hostPort, 3000), new byte[3000]);
        Assert.Empty(rig.TakeRx());
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_RW, 81, hostPort, 2000), new byte[2000]);
        var update = Assert.Single(rig.TakeRx());
        Assert.Equal(VirtioVsockOp.VIRTIO_VSOCK_OP_CREDIT_UPDATE, update.Op);
        Assert.Equal(5000u, update.Header.fwd_cnt);
        Assert.Equal(16384u, update.Header.buf_alloc);
        Assert.Equal(5000, VsockRig.ReadExactly(client, 5000).Length);
    }

    [Fact]
    public void Without_host_addresses_a_packet_larger_than_the_bounce_buffer_arrives_whole_and_in_order()
    {
        using var rig = new VsockRig();
        rig.PostRx();
        using var client = rig.ConnectClient(89);
        var (_, hostPort) = AcceptedHostConnection(rig, client, 89);
        rig.Memory.HostAddresses = false;
        var payload = new byte[100_000];
        new Random(3).NextBytes(payload);
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_RW, 89, hostPort, (uint)payload.Length), payload);
        Assert.Equal(100_000 - VirtioVsock.MaxPayloadPerPacket, rig.Device.FindConnection(hostPort, 89)!.BufferedCount);

        // The rest goes out when the socket is writable again, i.e. once the client reads.
        var received = new List<byte>();
        client.Blocking = false;
        var read = new byte[65536];
        for (int spins = 0; received.Count < payload.Length && spins < 1000; spins++)
        {
            try
            {
                received.AddRange(read.AsSpan(0, client.Receive(read)).ToArray());
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
            {
                rig.Loop.Pump(1);
            }
        }

        Assert.True(payload.AsSpan().SequenceEqual(received.ToArray()));
    }

    [Fact]
    public void A_credit_request_is_answered_with_a_credit_update()
    {
        using var rig = new VsockRig();
        rig.PostRx();
        using var client = rig.ConnectClient(82);
        var (_, hostPort) = AcceptedHostConnection(rig, client, 82);
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_CREDIT_REQUEST, 82, hostPort));
        Assert.Equal(VirtioVsockOp.VIRTIO_VSOCK_OP_CREDIT_UPDATE, Assert.Single(rig.TakeRx()).Op);
    }

    [Fact]
    public void A_host_peer_that_does_not_read_holds_at_most_the_buffer_and_a_guest_past_its_credit_is_reset()
    {
        const uint buffer = 8192;
        using var rig = new VsockRig(bufferBytes: buffer);
        rig.PostRx(32);
        using var client = rig.ConnectClient(83);
        var (_, hostPort) = AcceptedHostConnection(rig, client, 83);
        var chunk = new byte[4096];
        bool reset = false;
        for (int i = 0; i < 1000 && !reset; i++)
        {
            // A hostile guest: it ignores the credit (fwd_cnt) it is given.
            rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_RW, 83, hostPort, (uint)chunk.Length), chunk);
            rig.PostRx(1); // for the credit updates
            var connection = rig.Device.FindConnection(hostPort, 83);
            Assert.True(connection is null || connection.BufferedCount <= buffer);
            reset = rig.TakeRx().Any(p => p.Op == VirtioVsockOp.VIRTIO_VSOCK_OP_RST);
        }

        Assert.True(reset);
        Assert.Null(rig.Device.FindConnection(hostPort, 83));
        Assert.True(VsockRig.IsClosedByPeer(client));
    }

    [Fact]
    public void Bytes_the_socket_did_not_take_go_out_when_it_drains_in_order()
    {
        const uint buffer = 64 * 1024;
        using var rig = new VsockRig(bufferBytes: buffer);
        rig.PostRx(64);
        using var client = rig.ConnectClient(84);
        client.ReceiveBufferSize = 4096;
        var (_, hostPort) = AcceptedHostConnection(rig, client, 84);
        // A guest that keeps to its credit: it sends while buf_alloc - (tx_cnt - fwd_cnt) allows.
        uint sent = 0, fwdCnt = 0;
        var expected = new List<byte>();
        var random = new Random(5);
        while (sent < 2_000_000)
        {
            foreach (var packet in rig.TakeRx())
            {
                Assert.NotEqual(VirtioVsockOp.VIRTIO_VSOCK_OP_RST, packet.Op);
                fwdCnt = packet.Header.fwd_cnt;
            }

            uint credit = buffer - (sent - fwdCnt);
            if (credit == 0)
            {
                break; // the host reads below
            }

            var chunk = new byte[Math.Min(credit, 4096u)];
            random.NextBytes(chunk);
            expected.AddRange(chunk);
            rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_RW, 84, hostPort, (uint)chunk.Length), chunk);
            sent += (uint)chunk.Length;
        }

        Assert.True(rig.Device.FindConnection(hostPort, 84)!.BufferedCount > 0);
        var received = new List<byte>();
        client.Blocking = false;
        var read = new byte[65536];
        for (int spins = 0; received.Count < expected.Count && spins < 10000; spins++)
        {
            try
            {
                int got = client.Receive(read);
                received.AddRange(read.AsSpan(0, got).ToArray());
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
            {
                rig.Loop.Pump(1);
            }
        }

        Assert.Equal(expected.Count, received.Count);
        Assert.True(expected.SequenceEqual(received));
        Assert.Equal(0, rig.Device.FindConnection(hostPort, 84)!.BufferedCount);
        Assert.Equal(sent, rig.Device.FindConnection(hostPort, 84)!.ForwardedCount);
    }

    [Fact]
    public void A_guest_SHUTDOWN_SEND_ends_the_clients_stream_and_the_client_can_still_send()
    {
        using var rig = new VsockRig();
        rig.PostRx();
        using var client = rig.ConnectClient(85);
        var (_, hostPort) = AcceptedHostConnection(rig, client, 85);
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_RW, 85, hostPort, 3), "end"u8);
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_SHUTDOWN, 85, hostPort, flags: (uint)VirtioVsockShutdown.VIRTIO_VSOCK_SHUTDOWN_SEND));
        Assert.Equal("end", Encoding.ASCII.GetString(VsockRig.ReadExactly(client, 100)));
        client.Send("still"u8);
        rig.Loop.Pump();
        Assert.Equal("still", Encoding.ASCII.GetString(Assert.Single(rig.TakeRx()).Payload));
    }

    [Fact]
    public void A_guest_SHUTDOWN_of_both_directions_is_answered_with_RST_and_the_client_is_closed()
    {
        using var rig = new VsockRig();
        rig.PostRx();
        using var client = rig.ConnectClient(86);
        var (_, hostPort) = AcceptedHostConnection(rig, client, 86);
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_SHUTDOWN, 86, hostPort, flags: 3));
        Assert.Equal(VirtioVsockOp.VIRTIO_VSOCK_OP_RST, Assert.Single(rig.TakeRx()).Op);
        Assert.True(VsockRig.IsClosedByPeer(client));
        Assert.Equal(0, rig.Device.OpenConnections);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_host_close_is_a_SHUTDOWN_to_the_guest_after_the_data(bool halfClose)
    {
        using var rig = new VsockRig();
        rig.PostRx();
        var client = rig.ConnectClient(87);
        var (_, hostPort) = AcceptedHostConnection(rig, client, 87);
        client.Send("last words"u8);
        if (halfClose)
        {
            client.Shutdown(SocketShutdown.Send);
        }
        else
        {
            client.Dispose();
        }

        rig.Loop.Pump();
        var packets = rig.TakeRx();
        Assert.Equal(2, packets.Count);
        Assert.Equal("last words", Encoding.ASCII.GetString(packets[0].Payload));
        Assert.Equal(VirtioVsockOp.VIRTIO_VSOCK_OP_SHUTDOWN, packets[1].Op);
        Assert.Equal(halfClose ? 2u : 3u, packets[1].Header.flags);
        // The guest answers a full shutdown with RST: the connection is gone.
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_RST, 87, hostPort));
        Assert.Null(rig.Device.FindConnection(hostPort, 87));
        client.Dispose();
    }

    [Fact]
    public void A_host_peer_gone_while_the_guest_writes_is_an_RST_to_the_guest()
    {
        using var rig = new VsockRig();
        rig.PostRx();
        var client = rig.ConnectClient(88);
        var (_, hostPort) = AcceptedHostConnection(rig, client, 88);
        client.Dispose();
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_RW, 88, hostPort, 4), "lost"u8);
        rig.Loop.Pump();
        Assert.Contains(rig.TakeRx(), p => p.Op == VirtioVsockOp.VIRTIO_VSOCK_OP_RST);
        Assert.Null(rig.Device.FindConnection(hostPort, 88));
    }

    [Fact]
    public void Many_connections_at_once_each_keep_their_own_stream_and_more_than_the_maximum_are_refused()
    {
        using var rig = new VsockRig(maxConnections: 12);
        rig.PostRx(100);
        var clients = new List<(Socket Client, uint HostPort)>();
        for (uint i = 0; i < 12; i++)
        {
            var client = rig.ConnectClient(100 + i);
            clients.Add((client, AcceptedHostConnection(rig, client, 100 + i).HostPort));
        }

        Assert.Equal(12, clients.Select(c => c.HostPort).Distinct().Count());
        using var extra = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 2000 };
        extra.Connect(new UnixDomainSocketEndPoint(rig.SocketPath));
        rig.Loop.Pump();
        Assert.True(VsockRig.IsClosedByPeer(extra));

        for (int i = 0; i < clients.Count; i++)
        {
            clients[i].Client.Send(Encoding.ASCII.GetBytes($"from client {i}"));
        }

        rig.Loop.Pump();
        var packets = rig.TakeRx();
        Assert.Equal(12, packets.Count);
        foreach (var packet in packets)
        {
            int index = clients.FindIndex(c => c.HostPort == packet.Header.src_port);
            Assert.Equal($"from client {index}", Encoding.ASCII.GetString(packet.Payload));
            Assert.Equal(100u + (uint)index, packet.Header.dst_port);
        }

        foreach (var (client, _) in clients)
        {
            client.Dispose();
        }
    }

    [Fact]
    public void Reset_closes_every_host_socket_and_a_new_activation_sends_TRANSPORT_RESET()
    {
        using var rig = new VsockRig();
        rig.PostRx();
        rig.PostEvents();
        Assert.Empty(rig.TakeEvents()); // nothing on the first activation
        using var client = rig.ConnectClient(90);
        AcceptedHostConnection(rig, client, 90);

        rig.Device.Reset();
        Assert.True(VsockRig.IsClosedByPeer(client));
        Assert.Equal(0, rig.Device.OpenConnections);

        rig.Activate();
        Assert.Equal([(uint)VirtioVsockEventId.VIRTIO_VSOCK_EVENT_TRANSPORT_RESET], rig.TakeEvents());
    }

    [Fact]
    public void ResetTransport_drops_the_connections_and_tells_the_guest()
    {
        using var rig = new VsockRig();
        rig.PostRx();
        using var client = rig.ConnectClient(91);
        AcceptedHostConnection(rig, client, 91);
        rig.Device.ResetTransport();
        Assert.True(VsockRig.IsClosedByPeer(client));
        Assert.Empty(rig.TakeEvents()); // no event buffer yet: it waits for one
        rig.PostEvents(1);
        Assert.Equal([0u], rig.TakeEvents());
    }

    [Fact]
    public void The_configuration_space_holds_the_guest_cid()
    {
        using var rig = new VsockRig();
        var config = new byte[8];
        rig.Device.ReadConfig(0, config);
        Assert.Equal(VsockRig.GuestCid, BitConverter.ToUInt64(config));
        var high = new byte[4];
        rig.Device.ReadConfig(4, high);
        Assert.Equal(0u, BitConverter.ToUInt32(high));
    }

    [Fact]
    public void The_listening_socket_is_created_0600()
    {
        using var rig = new VsockRig();
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(rig.SocketPath));
    }
}
