using System.Buffers.Binary;
using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Net;

namespace KvmSharp.Tests.Unit.Devices.Virtio.Net;

/// <summary>A virtio-net device on a <see cref="FakeNetBackend"/> with a driver's receive and transmit queues in fake guest memory.</summary>
internal sealed class NetRig : IDisposable
{
    public const ushort QueueSize = 64;
    public const ulong BufferBase = 0x40000;

    public static readonly MacAddress TestMac = new(0x02_11_22_33_44_55);

    public NetRig(ulong features = ulong.MaxValue, FakeNetBackend? backend = null, bool activate = true)
    {
        Memory = new FakeGuestMemory(4 << 20);
        Backend = backend ?? new FakeNetBackend();
        Device = new VirtioNet(Backend, TestMac, eventLoop: null, queueSize: QueueSize);
        Rx = new DriverQueue(Memory, QueueSize, 0x0000, 0x0400, 0x1000, VirtioNet.ReceiveQueue);
        Tx = new DriverQueue(Memory, QueueSize, 0x2000, 0x2400, 0x3000, VirtioNet.TransmitQueue);
        Negotiated = (features & Device.AvailableFeatures) | VirtioFeatureBits.VIRTIO_F_VERSION_1;
        if (activate) Activate();
    }

    public FakeGuestMemory Memory { get; }

    public FakeNetBackend Backend { get; }

    public VirtioNet Device { get; }

    public DriverQueue Rx { get; }

    public DriverQueue Tx { get; }

    public ulong Negotiated { get; }

    public RecordingVirtioInterrupt Interrupt { get; } = new();

    public RecordingTransportStatus Transport { get; } = new();

    public void Activate() => Device.Activate(new VirtioActivation(Negotiated, [Rx.Config, Tx.Config], Memory, Interrupt, Transport));

    /// <summary>A frame as the tap delivers it: a vnet header (num_buffers unset), then <paramref name="payload"/> bytes of a counting pattern seeded by <paramref name="seed"/>.</summary>
    public static byte[] Frame(int payload, byte seed = 1, byte flags = 0)
    {
        var frame = new byte[virtio_net_hdr_v1.Size + payload];
        frame[0] = flags;
        for (int i = 0; i < payload; i++) frame[virtio_net_hdr_v1.Size + i] = (byte)(seed + i * 7);
        return frame;
    }

    /// <summary>Post <paramref name="count"/> receive buffers of <paramref name="length"/> bytes each, from <paramref name="at"/>.</summary>
    public void PostReceiveBuffers(int count, uint length, ulong at = BufferBase)
    {
        for (int i = 0; i < count; i++) Rx.AddChain((at + (ulong)i * length, length, true));
    }

    /// <summary>The bytes of used receive element <paramref name="slot"/>, which sits in buffer <paramref name="bufferIndex"/> of <paramref name="length"/>-byte buffers.</summary>
    public byte[] UsedBytes(ushort slot, uint bufferLength, ulong at = BufferBase)
    {
        var (id, length) = Rx.UsedElement(slot);
        return Memory.At(at + id * bufferLength, (int)length).ToArray();
    }

    public ushort NumBuffers(ulong address) => BinaryPrimitives.ReadUInt16LittleEndian(Memory.At(address + virtio_net_hdr_v1.NumBuffersOffset, 2));

    public void Dispose() => Device.Dispose();
}
