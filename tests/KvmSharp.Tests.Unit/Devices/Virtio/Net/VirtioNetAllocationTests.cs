using KvmSharp.Devices.Virtio.Net;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio.Net;

/// <summary>
/// Moving frames allocates nothing once warm: receiving (straight into the buffers and through the
/// bounce buffer) and transmitting. Measured in batches, as <see cref="VirtioHotPathAllocationTests"/> does:
/// a per-frame allocation shows in every batch, the runtime's rare one-off in at most two.
/// </summary>
public sealed class VirtioNetAllocationTests
{
    private static void AssertAllocationFree(long[] batches)
        => Assert.True(batches.Count(b => b == 0) >= batches.Length - 2, $"bytes allocated per batch: {string.Join(", ", batches)}");

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Receiving_frames_allocates_nothing(bool hostAddresses)
    {
        using var rig = new NetRig(~(VirtioNetFeatures.VIRTIO_NET_F_GUEST_TSO4 | VirtioNetFeatures.VIRTIO_NET_F_GUEST_TSO6));
        rig.Memory.HostAddresses = hostAddresses;
        rig.Memory.RecordCommits = false;
        var frames = Enumerable.Range(0, 8).Select(i => NetRig.Frame(1400 + i * 80, seed: (byte)i)).ToArray();
        long Round()
        {
            rig.PostReceiveBuffers(8, 2048);
            foreach (var frame in frames) rig.Backend.Incoming.Enqueue(frame);
            long before = GC.GetAllocatedBytesForCurrentThread();
            rig.Device.PollBackend();
            return GC.GetAllocatedBytesForCurrentThread() - before;
        }

        for (int i = 0; i < 100; i++) Round(); // warm up: JIT, tiering, statics
        var batches = new long[10];
        for (int i = 0; i < 100; i++) batches[i / 10] += Round();
        AssertAllocationFree(batches);
        Assert.Equal((ushort)(200 * 8), rig.Rx.UsedIdx);
        Assert.Equal(200 * 8, rig.Device.RxFrames);
    }

    [Fact]
    public void Transmitting_frames_allocates_nothing()
    {
        using var rig = new NetRig();
        rig.Memory.RecordCommits = false;
        rig.Backend.KeepSent = false;
        long Round()
        {
            for (int i = 0; i < 8; i++) rig.Tx.AddChain((0x50000 + (ulong)i * 0x1000, 12, false), (0x60000 + (ulong)i * 0x1000, 1500, false));
            long before = GC.GetAllocatedBytesForCurrentThread();
            rig.Device.QueueNotify(VirtioNet.TransmitQueue);
            return GC.GetAllocatedBytesForCurrentThread() - before;
        }

        for (int i = 0; i < 100; i++) Round();
        var batches = new long[10];
        for (int i = 0; i < 100; i++) batches[i / 10] += Round();
        AssertAllocationFree(batches);
        Assert.Equal(200 * 8, rig.Backend.SentCount);
    }
}
