using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Block;
using KvmSharp.Devices.Virtio.Queues;
using KvmSharp.Devices.Virtio.Rng;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio;

/// <summary>
/// Serving requests allocates nothing once warmed up: popping and pushing chains, virtio-rng, and virtio-blk's
/// event-loop side. Measured in batches: an allocation per request shows in every batch; the runtime's own rare
/// one-off allocation on the thread (seen once in a few dozen parallel runs) in at most one or two.
/// </summary>
public sealed class VirtioHotPathAllocationTests
{
    private static void AssertAllocationFree(long[] batches)
        => Assert.True(batches.Count(b => b == 0) >= batches.Length - 2, $"bytes allocated per batch: {string.Join(", ", batches)}");

    private const ulong Features = VirtioFeatureBits.VIRTIO_RING_F_EVENT_IDX | VirtioFeatureBits.VIRTIO_RING_F_INDIRECT_DESC;

    [Fact]
    public void Pop_push_and_notify_decisions_allocate_nothing()
    {
        var memory = new FakeGuestMemory(1 << 20);
        var driver = DriverQueue.AtStart(memory, 64);
        Assert.True(SplitVirtqueue.TryCreate(driver.Config, memory, Features, out var queue, out _));
        var chain = new DescriptorChain();
        for (int round = 0; round < 300; round++)
        {
            ServeRound(driver, queue!, chain); // warm up: JIT, tiering, statics
        }

        var batches = new long[10];
        for (int round = 0; round < 100; round++)
        {
            batches[round / 10] += ServeRound(driver, queue!, chain);
        }

        AssertAllocationFree(batches);
        Assert.Null(queue!.Failure);
        Assert.Equal((ushort)(400 * 16), driver.UsedIdx);
    }

    [Fact]
    public void Virtio_rng_serves_requests_without_allocating()
    {
        var memory = new FakeGuestMemory(1 << 20);
        var driver = DriverQueue.AtStart(memory, 64);
        memory.RecordCommits = false;
        using var rng = new VirtioRng(queueSize: 64);
        rng.Activate(new VirtioActivation(Features, [driver.Config], memory, new RecordingVirtioInterrupt(), new RecordingTransportStatus()));
        for (int i = 0; i < 300; i++)
        {
            driver.AddChain((0x40000, 64, true));
            rng.QueueNotify(0); // warm up: JIT, tiering, statics
        }

        var batches = new long[10];
        for (int i = 0; i < 100; i++)
        {
            driver.AddChain((0x40000, 64, true));
            long before = GC.GetAllocatedBytesForCurrentThread();
            rng.QueueNotify(0);
            batches[i / 10] += GC.GetAllocatedBytesForCurrentThread() - before;
        }

        AssertAllocationFree(batches);
        Assert.Equal(400, driver.UsedIdx);
        Assert.Equal(400, memory.CommitCount);
    }

    [Fact]
    public void Virtio_blk_queue_notify_allocates_nothing_once_its_request_pool_is_warm()
    {
        using var image = new TempImage(64);
        using var rig = new BlockRig(image, queueSize: 64);
        rig.Memory.RecordCommits = false;
        // Warm the pool with as many requests in flight as the rounds below use.
        Submit(rig, 0, 8);
        rig.WaitForUsed(8);

        var batches = new long[10];
        for (int round = 1; round <= 20; round++)
        {
            for (int i = 0; i < 8; i++)
            {
                ulong header = rig.Header(i, VirtioBlockRequestType.VIRTIO_BLK_T_IN, (ulong)i);
                rig.Driver.AddChain((header, 16, false), (BlockRig.DataArea + (ulong)i * 512, 512, true), (rig.Status(i), 1, true));
            }

            long before = GC.GetAllocatedBytesForCurrentThread();
            rig.Device.QueueNotify(0);
            batches[(round - 1) / 2] += GC.GetAllocatedBytesForCurrentThread() - before;
            rig.WaitForUsed((ushort)(8 * (round + 1)));
        }

        AssertAllocationFree(batches);
    }

    // Publishes 16 indirect chains (not measured), then pops and pushes them all; returns the bytes the device side allocated.
    private static long ServeRound(DriverQueue driver, SplitVirtqueue queue, DescriptorChain chain)
    {
        for (int i = 0; i < 16; i++)
        {
            driver.AddIndirectChain(0x40000 + (ulong)i * 0x100, (0x50000, 16, false), (0x51000, 512, true), (0x52000, 1, true));
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        while (queue.Pop(chain) == VirtqueuePopResult.Chain)
        {
            queue.TryPushUsed(chain.HeadIndex, 513);
        }

        queue.ShouldNotify();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    private static void Submit(BlockRig rig, int first, int count)
    {
        for (int i = first; i < first + count; i++)
        {
            ulong header = rig.Header(i, VirtioBlockRequestType.VIRTIO_BLK_T_IN, (ulong)i);
            rig.Driver.AddChain((header, 16, false), (BlockRig.DataArea + (ulong)i * 512, 512, true), (rig.Status(i), 1, true));
        }

        rig.Device.QueueNotify(0);
    }
}
