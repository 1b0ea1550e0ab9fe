using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using KvmSharp.Devices.Serial;
using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Net;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Memory;
using Xunit;
using static KvmSharp.Devices.Virtio.Net.VirtioNetFeatures;

namespace KvmSharp.Tests.Integration.Net;

/// <summary>
/// virtio-net on a real tap, in a network namespace each test creates and removes, with a real VM's
/// guest RAM: opening (offload probe, MTU, the refusals), and frames crossing the tap both ways
/// with the offloads the driver negotiated applied by the kernel (TUNSETOFFLOAD).
/// </summary>
public sealed class TapNetworkTests
{
    private const ulong RxRing = 0x80_0000, TxRing = 0x80_4000, RxBuffers = 0x90_0000, TxBuffer = 0xA0_0000;
    private const uint RxBufferBytes = 2048;
    private const ushort QueueSize = 64;

    [NetNamespaceFact]
    public void A_tap_opens_with_its_offloads_and_mtu_and_bad_taps_are_refused_with_the_reason()
    {
        string name;
        using (var ns = new NetNamespace(mtu: 1400))
        {
            name = ns.Name;
            var (supported, mtu, busy, missing, tun) = ns.Run(() =>
            {
                using var tap = TapDevice.Open(NetNamespace.Tap);
                var busy = Assert.Throws<TapException>(() => TapDevice.Open(NetNamespace.Tap));
                var missing = Assert.Throws<TapException>(() => TapDevice.Open("nosuchtap0"));
                var tun = Assert.Throws<TapException>(() => TapDevice.Open(NetNamespace.Tun));
                return (tap.SupportedOffloads, tap.Mtu, busy, missing, tun);
            });

            Assert.Equal(TunIoctls.TUN_F_CSUM | TunIoctls.TUN_F_TSO4 | TunIoctls.TUN_F_TSO6, supported & (TunIoctls.TUN_F_CSUM | TunIoctls.TUN_F_TSO4 | TunIoctls.TUN_F_TSO6));
            Assert.Equal(1400, mtu);
            Assert.Equal(TapError.Busy, busy.Error);
            Assert.Equal(16, busy.Errno); // EBUSY: one VM per single-queue tap
            Assert.Contains("another process", busy.Message);
            Assert.Equal(TapError.Missing, missing.Error);
            Assert.Contains("ip tuntap add dev nosuchtap0 mode tap", missing.Message);
            Assert.Equal(TapError.NotATap, tun.Error);
            Assert.False(missing.IsHostFailure || tun.IsHostFailure || busy.IsHostFailure);

            // The tap lives in the namespace only: from the test's own namespace it does not exist.
            if (!Directory.Exists($"/sys/class/net/{NetNamespace.Tap}"))
                Assert.Equal(TapError.Missing, Assert.Throws<TapException>(() => TapDevice.Open(NetNamespace.Tap)).Error);
        }

        Assert.False(NetNamespace.Exists(name));
    }

    [NetNamespaceFact]
    public void Frames_cross_the_tap_both_ways_with_checksum_offload_negotiated()
        => FramesCrossTheTap(offloads: true);

    [NetNamespaceFact]
    public void Frames_cross_the_tap_both_ways_with_complete_checksums_when_the_driver_takes_no_offload()
        => FramesCrossTheTap(offloads: false);

    private static void FramesCrossTheTap(bool offloads)
    {
        using var ns = new NetNamespace();
        var tap = ns.Run(() => TapDevice.Open(NetNamespace.Tap));
        var mac = MacAddress.Default("tap-network-test");
        ns.AddNeighbour(NetNamespace.GuestAddress, mac.ToString());
        using var host = ns.Run(() =>
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            socket.Bind(new IPEndPoint(IPAddress.Parse(NetNamespace.HostAddress), 9998));
            return socket;
        });

        using var vm = VirtualMachine.Create(new VmConfig
        {
            MemoryBytes = 16UL << 20,
            Image = TestGuest.LongMode(a => TestGuest.ExitWith(a, 0)),
            SerialSink = new CapturingSerialSink(),
        });
        var memory = new DeviceGuestMemory(vm.Memslots, vm.DirtyLog, vm.PageTracker);
        using var device = new VirtioNet(tap, mac, eventLoop: null, queueSize: QueueSize);
        var rx = new GuestDriverQueue(memory, VirtioNet.ReceiveQueue, QueueSize, RxRing, RxRing + 0x400, RxRing + 0x1000);
        var tx = new GuestDriverQueue(memory, VirtioNet.TransmitQueue, QueueSize, TxRing, TxRing + 0x400, TxRing + 0x1000);
        ulong guestOffloads = VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6 | VIRTIO_NET_F_GUEST_ECN;
        ulong features = (offloads ? device.AvailableFeatures : device.AvailableFeatures & ~guestOffloads) | VirtioFeatureBits.VIRTIO_F_VERSION_1;
        var transport = new RecordingTransport();
        device.Activate(new VirtioActivation(features, [rx.Config, tx.Config], memory, new NoInterrupt(), transport));
        Assert.Equal(offloads ? TunIoctls.TUN_F_CSUM | TunIoctls.TUN_F_TSO4 | TunIoctls.TUN_F_TSO6 | TunIoctls.TUN_F_TSO_ECN & tap.SupportedOffloads : 0u, device.ActiveOffloads);
        for (int i = 0; i < 32; i++) rx.AddChain((RxBuffers + (ulong)i * RxBufferBytes, RxBufferBytes, true));

        // Host -> guest: a UDP datagram from the namespace's stack to the guest's address.
        var payload = new byte[1000];
        new Random(11).NextBytes(payload);
        host.SendTo(payload, new IPEndPoint(IPAddress.Parse(NetNamespace.GuestAddress), 9999));
        byte[]? received = null;
        byte[] header = [];
        var deadline = DateTime.UtcNow.AddSeconds(10);
        ushort seen = 0;
        while (received is null && DateTime.UtcNow < deadline)
        {
            device.PollBackend();
            for (; seen < rx.UsedIdx; seen++)
            {
                var (id, length) = rx.UsedElement(seen);
                var bytes = new byte[length];
                Assert.True(memory.TryRead(new Devices.Memory.GuestAddress(RxBuffers + id * RxBufferBytes), bytes));
                var frame = bytes.AsSpan(virtio_net_hdr_v1.Size);
                if (!UdpFrames.IsUdpTo(frame, 9999)) continue; // IPv6 neighbour discovery and the like
                received = frame.ToArray();
                header = bytes[..virtio_net_hdr_v1.Size];
            }

            if (received is null) Thread.Sleep(20);
        }

        Assert.NotNull(received);
        Assert.Equal(payload, received.AsSpan(UdpFrames.PayloadOffset).ToArray());
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(virtio_net_hdr_v1.NumBuffersOffset)));
        // With GUEST_CSUM the tap hands the checksum to the guest (NEEDS_CSUM, partial); without it the kernel completed it.
        Assert.Equal(offloads, (header[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM) != 0);
        if (!offloads) Assert.True(UdpFrames.UdpChecksumValid(received), "the UDP checksum the guest got is not complete");

        // Guest -> host: a UDP datagram to the namespace's address, its checksum left to the host (NEEDS_CSUM) when CSUM is negotiated.
        var outgoing = new byte[1200];
        new Random(12).NextBytes(outgoing);
        byte[] tapMac = [0x02, 0x00, 0x00, 0x78, 0x00, 0x01];
        var guestMac = new byte[6];
        mac.CopyTo(guestMac);
        var udp = UdpFrames.Build(tapMac, guestMac, IPAddress.Parse(NetNamespace.GuestAddress), IPAddress.Parse(NetNamespace.HostAddress), 9999, 9998, outgoing, partialChecksum: offloads);
        var vnet = new byte[virtio_net_hdr_v1.Size];
        if (offloads)
        {
            vnet[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
            BinaryPrimitives.WriteUInt16LittleEndian(vnet.AsSpan(6), UdpFrames.UdpOffset);
            BinaryPrimitives.WriteUInt16LittleEndian(vnet.AsSpan(8), 6);
        }

        Assert.True(memory.TryWrite(new Devices.Memory.GuestAddress(TxBuffer), vnet));
        Assert.True(memory.TryWrite(new Devices.Memory.GuestAddress(TxBuffer + virtio_net_hdr_v1.Size), udp));
        tx.AddChain((TxBuffer, virtio_net_hdr_v1.Size, false), (TxBuffer + virtio_net_hdr_v1.Size, (uint)udp.Length, false));
        device.QueueNotify(VirtioNet.TransmitQueue);
        Assert.Equal(1, tx.UsedIdx);
        host.ReceiveTimeout = 10_000;
        var got = new byte[2000];
        int count = host.Receive(got);
        Assert.Equal(outgoing, got.AsSpan(0, count).ToArray());
        Assert.Equal(1, device.TxFrames);
        Assert.Empty(transport.Reasons);
    }

    private sealed class NoInterrupt : IVirtioInterrupt
    {
        public void NotifyQueue(int queueIndex)
        {
        }

        public void NotifyConfigChange()
        {
        }
    }

    private sealed class RecordingTransport : IVirtioTransportStatus
    {
        public List<string> Reasons { get; } = [];

        public void MarkNeedsReset(string reason) => Reasons.Add(reason);
    }
}
