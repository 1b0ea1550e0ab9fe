using System.Buffers.Binary;
using CsCheck;
using KvmSharp.Devices.Virtio.Net;
using Xunit;
using static KvmSharp.Devices.Virtio.Net.VirtioNetFeatures;

namespace KvmSharp.Tests.Unit.Devices.Virtio.Net;

/// <summary>
/// Whatever the frame sizes, the driver's buffer sizes and how few buffers it posts at a time, every
/// frame reaches the driver whole, in order, its num_buffers naming exactly the buffers it spans
/// (merged receive buffers), through the direct and the bounce path alike. (Buffers of at least 160
/// bytes: the 64-entry ring then holds the largest frame generated.)
/// </summary>
public sealed class VirtioNetReceivePropertyTests
{
    private const uint MaxBuffer = 4096;

    private static readonly Gen<(int[] Frames, uint Buffer, int PostAtOnce, bool HostAddresses, bool Gso)> ScenarioGen =
        Gen.Select(Gen.Int[1, 9000].Array[1, 12], Gen.UInt[160, MaxBuffer], Gen.Int[1, 64], Gen.Bool, Gen.Bool);

    [Fact]
    public void Every_frame_arrives_whole_and_in_order_across_merged_buffers()
    {
        ScenarioGen.Sample(s =>
        {
            var (sizes, bufferBytes, postAtOnce, hostAddresses, gso) = s;
            using var rig = new NetRig(gso ? ulong.MaxValue : ~(VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6 | VIRTIO_NET_F_GUEST_UFO));
            rig.Memory.HostAddresses = hostAddresses;
            var frames = sizes.Select((size, i) => NetRig.Frame(size, seed: (byte)(i * 31 + 1))).ToList();
            foreach (var frame in frames) rig.Backend.Incoming.Enqueue(frame);

            var received = new List<byte[]>();
            var current = new List<byte>();
            int expectedBuffers = 0, buffersSoFar = 0, posted = 0;
            ushort seen = 0;
            for (int step = 0; step < 2000 && received.Count < frames.Count; step++)
            {
                int room = NetRig.QueueSize - (posted - seen);
                for (int i = 0; i < Math.Min(postAtOnce, room); i++, posted++)
                {
                    ushort id = (ushort)(posted % NetRig.QueueSize);
                    rig.Rx.AddChain((NetRig.BufferBase + id * MaxBuffer, bufferBytes, true));
                }

                rig.Device.QueueNotify(VirtioNet.ReceiveQueue);
                for (; seen != rig.Rx.UsedIdx; seen++)
                {
                    var (id, length) = rig.Rx.UsedElement(seen);
                    var bytes = rig.Memory.At(NetRig.BufferBase + id * MaxBuffer, (int)length).ToArray();
                    if (buffersSoFar == 0) expectedBuffers = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(virtio_net_hdr_v1.NumBuffersOffset));
                    current.AddRange(bytes);
                    if (++buffersSoFar < expectedBuffers) continue;
                    // The header's num_buffers is the device's; compare the rest with what the tap delivered.
                    var whole = current.ToArray();
                    whole[virtio_net_hdr_v1.NumBuffersOffset] = whole[virtio_net_hdr_v1.NumBuffersOffset + 1] = 0;
                    received.Add(whole);
                    current.Clear();
                    buffersSoFar = 0;
                }
            }

            Assert.False(rig.Transport.NeedsReset, string.Join("; ", rig.Transport.Reasons));
            Assert.Equal(frames.Count, received.Count);
            for (int i = 0; i < frames.Count; i++) Assert.True(frames[i].AsSpan().SequenceEqual(received[i]), $"frame {i} ({frames[i].Length} bytes) differs");
            Assert.Equal(0, rig.Device.RxDropped);
            Assert.True(rig.Memory.GuardsIntact());
        }, iter: 300);
    }
}
