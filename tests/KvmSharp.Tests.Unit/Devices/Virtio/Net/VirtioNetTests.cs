using System.Buffers.Binary;
using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Net;
using Xunit;
using static KvmSharp.Devices.Virtio.Net.VirtioNetFeatures;

namespace KvmSharp.Tests.Unit.Devices.Virtio.Net;

public sealed class VirtioNetTests
{
    private const ulong WithoutMerge = ~VIRTIO_NET_F_MRG_RXBUF;
    private const ulong WithoutGuestOffloads = ~(VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6 | VIRTIO_NET_F_GUEST_ECN);

    [Fact]
    public void Guest_offloads_are_offered_only_as_far_as_the_tap_accepts_them()
    {
        using var full = new NetRig(activate: false);
        ulong offered = full.Device.AvailableFeatures;
        foreach (ulong bit in new[] { VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_ECN,
                     VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS,
                     VirtioFeatureBits.VIRTIO_RING_F_EVENT_IDX })
        {
            Assert.True((offered & bit) != 0, $"feature 0x{bit:x} not offered");
        }

        using var csumOnly = new NetRig(backend: new FakeNetBackend(TunIoctls.TUN_F_CSUM), activate: false);
        Assert.NotEqual(0UL, csumOnly.Device.AvailableFeatures & VIRTIO_NET_F_GUEST_CSUM);
        Assert.Equal(0UL, csumOnly.Device.AvailableFeatures & (VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6 | VIRTIO_NET_F_GUEST_ECN));

        using var none = new NetRig(backend: new FakeNetBackend(0), activate: false);
        Assert.Equal(0UL, none.Device.AvailableFeatures & (VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4));
        Assert.NotEqual(0UL, none.Device.AvailableFeatures & VIRTIO_NET_F_HOST_TSO4); // the tap takes GSO frames regardless
    }

    [Theory]
    [InlineData(ulong.MaxValue, TunIoctls.TUN_F_CSUM | TunIoctls.TUN_F_TSO4 | TunIoctls.TUN_F_TSO6 | TunIoctls.TUN_F_TSO_ECN)]
    [InlineData(~(VIRTIO_NET_F_GUEST_TSO6 | VIRTIO_NET_F_GUEST_ECN), TunIoctls.TUN_F_CSUM | TunIoctls.TUN_F_TSO4)]
    [InlineData(~VIRTIO_NET_F_GUEST_CSUM, 0u)]
    [InlineData(WithoutGuestOffloads, 0u)]
    public void Activation_sets_the_tap_offloads_the_driver_negotiated_and_reset_clears_them(ulong features, uint expected)
    {
        using var rig = new NetRig(features);
        Assert.Equal(expected, rig.Device.ActiveOffloads);
        Assert.Equal(expected, rig.Backend.OffloadCalls[^1]);
        rig.Device.Reset();
        Assert.Equal(0u, rig.Device.ActiveOffloads);
        if (expected != 0) Assert.Equal(0u, rig.Backend.OffloadCalls[^1]);
    }

    [Fact]
    public void Configuration_space_holds_the_mac_link_up_one_queue_pair_and_the_mtu()
    {
        using var rig = new NetRig(backend: new FakeNetBackend(mtu: 9000), activate: false);
        var config = new byte[24];
        rig.Device.ReadConfig(0, config);
        Assert.Equal(new byte[] { 0x02, 0x11, 0x22, 0x33, 0x44, 0x55 }, config[..6]);
        Assert.Equal(VIRTIO_NET_S_LINK_UP, BinaryPrimitives.ReadUInt16LittleEndian(config.AsSpan(6)));
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(config.AsSpan(8)));
        Assert.Equal(9000, BinaryPrimitives.ReadUInt16LittleEndian(config.AsSpan(10)));
        var tail = new byte[4];
        rig.Device.ReadConfig(4, tail);
        Assert.Equal(new byte[] { 0x44, 0x55, 0x01, 0x00 }, tail);
        var beyond = new byte[4] { 9, 9, 9, 9 };
        rig.Device.ReadConfig(100, beyond);
        Assert.All(beyond, b => Assert.Equal(0, b));
        rig.Device.WriteConfig(0, new byte[6]); // read-only: ignored
        rig.Device.ReadConfig(0, config);
        Assert.Equal(0x02, config[0]);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_transmitted_chain_reaches_the_tap_as_one_frame_header_included(bool hostAddresses)
    {
        using var rig = new NetRig();
        rig.Memory.HostAddresses = hostAddresses;
        var frame = NetRig.Frame(1000, seed: 3, flags: VIRTIO_NET_HDR_F_NEEDS_CSUM);
        frame.AsSpan(0, 12).CopyTo(rig.Memory.At(0x50000, 12));
        frame.AsSpan(12, 400).CopyTo(rig.Memory.At(0x60000, 400));
        frame.AsSpan(412).CopyTo(rig.Memory.At(0x70000, 600));
        rig.Tx.AddChain((0x50000, 12, false), (0x60000, 400, false), (0x70000, 600, false));

        rig.Device.QueueNotify(VirtioNet.TransmitQueue);

        Assert.Equal(frame, Assert.Single(rig.Backend.Sent));
        Assert.Equal(1, rig.Tx.UsedIdx);
        Assert.Equal(0u, rig.Tx.UsedElement(0).Length);
        Assert.Equal(1, rig.Interrupt.QueueNotifications(VirtioNet.TransmitQueue));
        Assert.Equal(1, rig.Device.TxFrames);
        Assert.Equal(1000, rig.Device.TxBytes);
        Assert.False(rig.Transport.NeedsReset);
    }

    [Fact]
    public void A_transmit_chain_without_a_whole_header_is_dropped_and_returned()
    {
        using var rig = new NetRig();
        rig.Tx.AddChain((0x50000, 8, false));
        rig.Tx.AddChain((0x51000, 60, false));
        rig.Device.QueueNotify(VirtioNet.TransmitQueue);
        Assert.Single(rig.Backend.Sent);
        Assert.Equal(60, rig.Backend.Sent[0].Length);
        Assert.Equal(2, rig.Tx.UsedIdx);
        Assert.Equal(1, rig.Device.TxDropped);
        Assert.False(rig.Transport.NeedsReset);
    }

    [Fact]
    public void A_frame_the_tap_refuses_is_dropped_and_the_chain_still_returned()
    {
        using var rig = new NetRig();
        rig.Backend.SendErrno = 5; // EIO: the tap is down
        rig.Tx.AddChain((0x50000, 100, false));
        rig.Device.QueueNotify(VirtioNet.TransmitQueue);
        Assert.Equal(1, rig.Tx.UsedIdx);
        Assert.Equal(1, rig.Device.TxDropped);
        Assert.Equal(0, rig.Device.TxFrames);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_received_frame_spans_merged_buffers_with_num_buffers_set(bool hostAddresses)
    {
        using var rig = new NetRig(WithoutGuestOffloads);
        rig.Memory.HostAddresses = hostAddresses;
        const uint Buffer = 1526;
        rig.PostReceiveBuffers(48, Buffer); // room for a 64 KiB frame: read straight into the buffers when they have host addresses
        var big = NetRig.Frame(3000, seed: 5);
        var small = NetRig.Frame(60, seed: 9);
        rig.Backend.Incoming.Enqueue(big);
        rig.Backend.Incoming.Enqueue(small);

        rig.Device.PollBackend();

        Assert.Equal(3, rig.Rx.UsedIdx); // 3012 bytes in two buffers, then one
        Assert.Equal((0u, Buffer), rig.Rx.UsedElement(0));
        Assert.Equal((1u, (uint)big.Length - Buffer), rig.Rx.UsedElement(1));
        Assert.Equal((2u, (uint)small.Length), rig.Rx.UsedElement(2));
        Assert.Equal(2, rig.NumBuffers(NetRig.BufferBase));
        Assert.Equal(1, rig.NumBuffers(NetRig.BufferBase + 2 * Buffer));
        var received = rig.UsedBytes(0, Buffer).Concat(rig.UsedBytes(1, Buffer)).ToArray();
        Assert.Equal(big.AsSpan(12).ToArray(), received.AsSpan(12).ToArray());
        Assert.Equal(small.AsSpan(12).ToArray(), rig.UsedBytes(2, Buffer).AsSpan(12).ToArray());
        Assert.Equal(1, rig.Interrupt.QueueNotifications(VirtioNet.ReceiveQueue));
        Assert.Equal(2, rig.Device.RxFrames);
        Assert.Equal(3060, rig.Device.RxBytes);
        Assert.Equal(hostAddresses, rig.Memory.Commits.Count > 0);
        Assert.False(rig.Transport.NeedsReset);
        Assert.True(rig.Memory.GuardsIntact());
    }

    [Fact]
    public void Without_merged_buffers_each_frame_takes_one_chain_and_num_buffers_is_one()
    {
        using var rig = new NetRig(WithoutMerge & WithoutGuestOffloads);
        rig.PostReceiveBuffers(2, 2048);
        rig.Backend.Incoming.Enqueue(NetRig.Frame(1500));
        rig.Backend.Incoming.Enqueue(NetRig.Frame(100, seed: 2));
        rig.Device.PollBackend();
        Assert.Equal(2, rig.Rx.UsedIdx);
        Assert.Equal(1512u, rig.Rx.UsedElement(0).Length);
        Assert.Equal(112u, rig.Rx.UsedElement(1).Length);
        Assert.Equal(1, rig.NumBuffers(NetRig.BufferBase));
        Assert.Equal(NetRig.Frame(100, seed: 2).AsSpan(12).ToArray(), rig.UsedBytes(1, 2048).AsSpan(12).ToArray());
    }

    [Fact]
    public void Without_merged_buffers_a_frame_larger_than_the_chain_is_dropped_and_the_chain_serves_the_next()
    {
        using var rig = new NetRig(WithoutMerge & WithoutGuestOffloads);
        rig.PostReceiveBuffers(1, 1600);
        rig.Backend.Incoming.Enqueue(NetRig.Frame(3000));
        rig.Backend.Incoming.Enqueue(NetRig.Frame(500, seed: 8));
        rig.Device.PollBackend();
        Assert.Equal(1, rig.Device.RxDropped);
        Assert.Equal(1, rig.Rx.UsedIdx);
        Assert.Equal(512u, rig.Rx.UsedElement(0).Length);
        Assert.Equal(NetRig.Frame(500, seed: 8).AsSpan(12).ToArray(), rig.UsedBytes(0, 1600).AsSpan(12).ToArray());
        Assert.False(rig.Transport.NeedsReset);
    }

    [Fact]
    public void Without_buffers_a_frame_waits_and_arrives_when_the_driver_posts_some()
    {
        using var rig = new NetRig(WithoutGuestOffloads);
        var frame = NetRig.Frame(700, seed: 4);
        rig.Backend.Incoming.Enqueue(frame);
        rig.Device.PollBackend();
        Assert.Equal(0, rig.Rx.UsedIdx);
        Assert.Single(rig.Backend.Incoming); // not read: nowhere to put it
        Assert.Equal(0, rig.Interrupt.QueueNotifications(VirtioNet.ReceiveQueue));

        rig.PostReceiveBuffers(4, 2048);
        rig.Device.QueueNotify(VirtioNet.ReceiveQueue);
        Assert.Equal(1, rig.Rx.UsedIdx);
        Assert.Equal(frame.AsSpan(12).ToArray(), rig.UsedBytes(0, 2048).AsSpan(12).ToArray());
        Assert.Empty(rig.Backend.Incoming);
    }

    [Fact]
    public void With_guest_gso_and_little_room_a_frame_goes_through_the_bounce_buffer_and_waits_for_room()
    {
        using var rig = new NetRig(); // GUEST_TSO: room for 64 KiB needed before reading straight into the buffers
        rig.PostReceiveBuffers(2, 4096);
        var frame = NetRig.Frame(20000, seed: 6);
        rig.Backend.Incoming.Enqueue(frame);
        rig.Device.PollBackend();
        Assert.Equal(0, rig.Rx.UsedIdx); // read, but 8 KiB cannot take it
        Assert.Empty(rig.Backend.Incoming);

        rig.PostReceiveBuffers(6, 4096, at: NetRig.BufferBase + 2 * 4096);
        rig.Device.QueueNotify(VirtioNet.ReceiveQueue);
        Assert.Equal(5, rig.Rx.UsedIdx);
        Assert.Equal(5, rig.NumBuffers(NetRig.BufferBase));
        var received = Enumerable.Range(0, 5).SelectMany(i => rig.UsedBytes((ushort)i, 4096)).ToArray();
        Assert.Equal(frame.AsSpan(12).ToArray(), received.AsSpan(12).ToArray());
        Assert.Equal(1, rig.Interrupt.QueueNotifications(VirtioNet.ReceiveQueue));
    }

    [Fact]
    public void The_header_flags_from_the_tap_reach_the_guest()
    {
        using var rig = new NetRig();
        rig.PostReceiveBuffers(20, 4096);
        rig.Backend.Incoming.Enqueue(NetRig.Frame(100, flags: VIRTIO_NET_HDR_F_NEEDS_CSUM));
        rig.Device.PollBackend();
        Assert.Equal(1, rig.Rx.UsedIdx);
        Assert.Equal(VIRTIO_NET_HDR_F_NEEDS_CSUM, rig.Memory.At(NetRig.BufferBase, 1)[0]);
    }

    [Fact]
    public void A_receive_buffer_smaller_than_the_header_needs_a_reset_and_nothing_is_written()
    {
        using var rig = new NetRig(WithoutGuestOffloads);
        rig.Rx.AddChain((NetRig.BufferBase, 8, true));
        rig.Backend.Incoming.Enqueue(NetRig.Frame(60));
        rig.Device.PollBackend();
        Assert.Single(rig.Transport.Reasons);
        Assert.Contains("header", rig.Transport.Reasons.First());
        Assert.Equal(0, rig.Rx.UsedIdx);
        Assert.False(rig.Memory.At(NetRig.BufferBase, 8).ContainsAnyExcept((byte)0));
        Assert.Single(rig.Backend.Incoming);
    }

    [Fact]
    public void A_receive_buffer_in_read_only_memory_needs_a_reset()
    {
        using var rig = new NetRig(WithoutGuestOffloads);
        rig.Memory.HostAddresses = false;
        rig.Memory.ReadOnlyRange = (NetRig.BufferBase, NetRig.BufferBase + 0x10000);
        rig.PostReceiveBuffers(2, 2048);
        rig.Backend.Incoming.Enqueue(NetRig.Frame(60));
        rig.Device.PollBackend();
        Assert.Single(rig.Transport.Reasons);
        Assert.Equal(0, rig.Rx.UsedIdx);
    }

    [Fact]
    public void A_hostile_transmit_ring_needs_a_reset_and_nothing_is_sent()
    {
        using var rig = new NetRig();
        rig.Tx.WriteDescriptor(0, 0x50000, 100, VringFlagsNext, 1);
        rig.Tx.WriteDescriptor(1, 0x51000, 100, VringFlagsNext, 0); // loops back to 0
        rig.Tx.Publish(0);
        rig.Device.QueueNotify(VirtioNet.TransmitQueue);
        Assert.Single(rig.Transport.Reasons);
        Assert.Empty(rig.Backend.Sent);
    }

    [Fact]
    public void After_reset_kicks_and_frames_are_ignored()
    {
        using var rig = new NetRig();
        rig.Device.Reset();
        rig.PostReceiveBuffers(2, 2048);
        rig.Backend.Incoming.Enqueue(NetRig.Frame(60));
        rig.Tx.AddChain((0x50000, 100, false));
        rig.Device.PollBackend();
        rig.Device.QueueNotify(VirtioNet.ReceiveQueue);
        rig.Device.QueueNotify(VirtioNet.TransmitQueue);
        Assert.Equal(0, rig.Rx.UsedIdx);
        Assert.Equal(0, rig.Tx.UsedIdx);
        Assert.Empty(rig.Backend.Sent);
        Assert.Equal(0, rig.Backend.ReceiveCalls);
    }

    private const ushort VringFlagsNext = KvmSharp.Devices.Virtio.Queues.VringFlags.VRING_DESC_F_NEXT;
}
