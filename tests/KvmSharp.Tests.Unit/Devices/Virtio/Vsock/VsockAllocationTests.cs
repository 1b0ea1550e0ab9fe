using System.Net.Sockets;
using KvmSharp.Devices.Virtio.Vsock;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio.Vsock;

/// <summary>
/// Moving data allocates nothing once a connection is up: a guest packet to the host socket, host bytes
/// into the guest's receive buffers, and the credit updates between. Measured in batches around the
/// device's own calls (the test's driver and socket code allocate); see VirtioHotPathAllocationTests.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class VsockAllocationTests
{
    [Fact]
    public void Data_both_ways_and_credit_updates_allocate_nothing()
    {
        using var rig = new VsockRig();
        rig.Memory.RecordCommits = false;
        rig.PostRx();
        using var client = rig.ConnectClient(7);
        var request = Assert.Single(rig.TakeRx());
        uint hostPort = request.Header.src_port;
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_RESPONSE, 7, hostPort));
        Assert.StartsWith("OK ", VsockRig.ReadLine(client));

        var payload = new byte[1000];
        var hostBytes = new byte[1000];
        var sink = new byte[4096];
        uint guestReceived = 0;
        long Round()
        {
            if ((ushort)(rig.Rx.AvailIdx - rig.Rx.UsedIdx) < 4)
            {
                rig.PostRx(2, kick: false); // few outstanding: the rig's driver reuses descriptors round-robin
            }

            client.Send(hostBytes);
            rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_RW, 7, hostPort, (uint)payload.Length, fwdCnt: guestReceived), payload, kick: false);
            long before = GC.GetAllocatedBytesForCurrentThread();
            rig.Device.QueueNotify(0);
            rig.Device.QueueNotify(1);
            rig.Loop.Pump(1);
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            foreach (var packet in rig.TakeRx())
            {
                Assert.NotEqual(VirtioVsockOp.VIRTIO_VSOCK_OP_RST, packet.Op);
                guestReceived += packet.Header.len;
            }

            int got = 0;
            while (got < payload.Length)
            {
                got += client.Receive(sink, 0, payload.Length - got, SocketFlags.None);
            }

            return allocated;
        }

        for (int i = 0; i < 300; i++)
        {
            Round(); // warm up: JIT, tiering, the connection's buffer
        }

        var batches = new long[10];
        for (int i = 0; i < 100; i++)
        {
            batches[i / 10] += Round();
        }

        Assert.True(batches.Count(b => b == 0) >= batches.Length - 2, $"bytes allocated per batch: {string.Join(", ", batches)}");
        Assert.Equal(400u * 1000, guestReceived);
        Assert.False(rig.Transport.NeedsReset);
    }
}
