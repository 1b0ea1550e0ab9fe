using System.Runtime.InteropServices;
using KvmSharp.Devices.Virtio.Vsock;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio.Vsock;

/// <summary>A driver that breaks virtio-vsock's rules gets DEVICE_NEEDS_RESET; the device never throws or writes outside RAM.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class HostileVsockDriverTests
{
    [Fact]
    public void A_transmit_chain_shorter_than_a_header_needs_a_reset()
    {
        using var rig = new VsockRig();
        rig.Tx.AddChain((0x200000, 20, false));
        rig.Device.QueueNotify(1);
        Assert.Contains("less than a 44-byte packet header", Assert.Single(rig.Transport.Reasons));
        Assert.True(rig.Memory.GuardsIntact());
    }

    [Fact]
    public void A_packet_length_beyond_its_buffers_needs_a_reset()
    {
        using var rig = new VsockRig();
        rig.PostRx();
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_RW, 1, 2, 100_000), new byte[10]);
        Assert.Contains("packet length 100000", Assert.Single(rig.Transport.Reasons));
    }

    [Fact]
    public void A_receive_buffer_that_cannot_hold_a_header_needs_a_reset()
    {
        using var rig = new VsockRig();
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_REQUEST, 1, 2)); // an RST waits for the guest
        rig.Rx.AddChain((0x100000, 16, true));
        rig.Device.QueueNotify(0);
        Assert.Contains("less than a 44-byte packet header", Assert.Single(rig.Transport.Reasons));
    }

    [Fact]
    public void A_receive_buffer_in_read_only_memory_needs_a_reset_and_nothing_is_written()
    {
        using var rig = new VsockRig();
        rig.Memory.ReadOnlyRange = (0x100000, 0x110000);
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_REQUEST, 1, 2));
        rig.Rx.AddChain((0x100000, 44, true), (0x100100, 4096, true));
        rig.Device.QueueNotify(0);
        Assert.Single(rig.Transport.Reasons);
        Assert.False(rig.Memory.At(0x100000, 44).ContainsAnyExcept((byte)0));
    }

    [Fact]
    public void After_a_needed_reset_host_clients_are_closed_and_kicks_are_ignored()
    {
        using var rig = new VsockRig();
        rig.PostRx();
        using var client = rig.ConnectClient(5);
        Assert.Single(rig.TakeRx());
        rig.Tx.AddChain((0x200000, 8, false));
        rig.Device.QueueNotify(1);
        Assert.True(rig.Transport.NeedsReset);
        Assert.True(VsockRig.IsClosedByPeer(client));
        rig.SendTx(VsockRig.Header(VirtioVsockOp.VIRTIO_VSOCK_OP_REQUEST, 1, 2));
        Assert.Empty(rig.TakeRx());
    }

    [Fact]
    public void Random_transmit_packets_never_throw_and_either_work_or_need_a_reset()
    {
        var random = new Random(11);
        for (int round = 0; round < 30; round++)
        {
            using var rig = new VsockRig();
            rig.PostRx(32);
            for (int i = 0; i < 40; i++)
            {
                var header = VsockRig.Header((VirtioVsockOp)random.Next(0, 9), (uint)random.Next(0, 4), (uint)random.Next(0, 4), (uint)random.Next(0, 64),
                    (uint)random.Next(), (uint)random.Next(), (uint)random.Next(0, 4));
                if (random.Next(4) == 0)
                {
                    header.type = (ushort)random.Next(0, 4);
                }

                var payload = new byte[random.Next(0, 64)];
                rig.SendTx(header, payload);
                rig.Loop.Pump(1);
            }

            rig.TakeRx();
            Assert.True(rig.Memory.GuardsIntact());
            Assert.True(rig.Transport.Reasons.Count <= 1);
        }
    }
}
