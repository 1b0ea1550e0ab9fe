using KvmSharp.Devices.Memory;
using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Queues;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio;

public sealed class SplitVirtqueueTests
{
    private const ulong AllRing = VirtioFeatureBits.VIRTIO_RING_F_EVENT_IDX | VirtioFeatureBits.VIRTIO_RING_F_INDIRECT_DESC;

    private static (FakeGuestMemory Memory, DriverQueue Driver, SplitVirtqueue Queue) Make(ushort size = 8, ulong features = AllRing)
    {
        var memory = new FakeGuestMemory(1 << 20);
        var driver = DriverQueue.AtStart(memory, size);
        Assert.True(SplitVirtqueue.TryCreate(driver.Config, memory, features, out var queue, out var error), error?.ToString());
        return (memory, driver, queue!);
    }

    [Fact]
    public void A_published_chain_pops_with_its_buffers_readable_first()
    {
        var (_, driver, queue) = Make();
        ushort head = driver.AddChain((0x10000, 16, false), (0x11000, 512, true), (0x12000, 1, true));
        var chain = new DescriptorChain();

        Assert.Equal(VirtqueuePopResult.Chain, queue.Pop(chain));
        Assert.Equal(head, chain.HeadIndex);
        Assert.Equal(3, chain.Count);
        Assert.Equal(1, chain.ReadableCount);
        Assert.Equal(16u, chain.ReadableLength);
        Assert.Equal(513u, chain.WritableLength);
        Assert.Equal(new VirtqueueSegment(new GuestAddress(0x11000), 512, true), chain.Writable[0]);
        Assert.Equal(VirtqueuePopResult.Empty, queue.Pop(chain));
        Assert.Null(queue.Failure);
    }

    [Fact]
    public void An_indirect_table_is_flattened_into_the_chain()
    {
        var (_, driver, queue) = Make();
        ushort head = driver.AddIndirectChain(0x20000, (0x10000, 16, false), (0x11000, 4096, true), (0x12000, 1, true));
        var chain = new DescriptorChain();

        Assert.Equal(VirtqueuePopResult.Chain, queue.Pop(chain));
        Assert.Equal(head, chain.HeadIndex);
        Assert.Equal(3, chain.Count);
        Assert.Equal(4097u, chain.WritableLength);
        Assert.Equal(0x12000UL, chain.Segments[2].Address.Value);
    }

    [Fact]
    public void Used_elements_carry_head_and_length_and_advance_the_used_index_past_65535()
    {
        var (_, driver, queue) = Make(size: 4);
        var chain = new DescriptorChain();
        for (int round = 0; round < 70000; round++)
        {
            driver.AddChain((0x10000, 8, true));
            Assert.Equal(VirtqueuePopResult.Chain, queue.Pop(chain));
            Assert.True(queue.TryPushUsed(chain.HeadIndex, (uint)round));
        }

        Assert.Equal(70000 % 65536, driver.UsedIdx);
        var (id, length) = driver.UsedElement(69999 % 65536);
        Assert.Equal(69999u, length);
        Assert.True(id < 4);
    }

    [Fact]
    public void Without_event_idx_no_interrupt_flag_suppresses_notifications()
    {
        var (_, driver, queue) = Make(features: 0);
        var chain = new DescriptorChain();
        driver.AddChain((0x10000, 8, true));
        Assert.Equal(VirtqueuePopResult.Chain, queue.Pop(chain));
        Assert.True(queue.TryPushUsed(chain.HeadIndex, 8));
        Assert.True(queue.ShouldNotify());
        Assert.False(queue.ShouldNotify()); // nothing new since

        driver.AvailFlags = VringFlags.VRING_AVAIL_F_NO_INTERRUPT;
        driver.AddChain((0x10000, 8, true));
        Assert.Equal(VirtqueuePopResult.Chain, queue.Pop(chain));
        Assert.True(queue.TryPushUsed(chain.HeadIndex, 8));
        Assert.False(queue.ShouldNotify());
    }

    [Fact]
    public void With_event_idx_the_driver_is_interrupted_only_when_the_used_index_passes_used_event()
    {
        var (_, driver, queue) = Make(size: 16);
        var chain = new DescriptorChain();
        driver.UsedEvent = 2; // interrupt when the used index moves past 2, i.e. after the third used element
        bool[] notified = new bool[5];
        for (int i = 0; i < 5; i++)
        {
            driver.AddChain((0x10000, 8, true));
            Assert.Equal(VirtqueuePopResult.Chain, queue.Pop(chain));
            Assert.True(queue.TryPushUsed(chain.HeadIndex, 8));
            notified[i] = queue.ShouldNotify();
        }

        Assert.Equal([false, false, true, false, false], notified);

        // Several used at once that jump over used_event still interrupt once.
        driver.UsedEvent = 6;
        for (int i = 0; i < 3; i++)
        {
            driver.AddChain((0x10000, 8, true));
            Assert.Equal(VirtqueuePopResult.Chain, queue.Pop(chain));
            Assert.True(queue.TryPushUsed(chain.HeadIndex, 8));
        }

        Assert.True(queue.ShouldNotify());
        Assert.False(queue.ShouldNotify());
    }

    [Fact]
    public void With_event_idx_an_empty_queue_publishes_avail_event()
    {
        var (_, driver, queue) = Make();
        var chain = new DescriptorChain();
        driver.AddChain((0x10000, 8, true));
        driver.AddChain((0x10000, 8, true));
        Assert.Equal(VirtqueuePopResult.Chain, queue.Pop(chain));
        Assert.Equal(VirtqueuePopResult.Chain, queue.Pop(chain));
        Assert.Equal(VirtqueuePopResult.Empty, queue.Pop(chain));
        Assert.Equal(2, driver.AvailEvent);
    }

    [Fact]
    public void A_used_ring_in_read_only_memory_is_refused_at_creation()
    {
        var memory = new FakeGuestMemory(1 << 20);
        var driver = DriverQueue.AtStart(memory, 8);
        memory.ReadOnlyRange = (driver.Used, driver.Used + 4096);
        Assert.False(SplitVirtqueue.TryCreate(driver.Config, memory, AllRing, out _, out var error));
        Assert.Equal(VirtqueueErrorKind.UsedRingNotWritable, error!.Kind);
    }

    [Fact]
    public void A_used_ring_that_becomes_read_only_breaks_the_queue_at_push()
    {
        var (memory, driver, queue) = Make();
        var chain = new DescriptorChain();
        driver.AddChain((0x10000, 8, true));
        Assert.Equal(VirtqueuePopResult.Chain, queue.Pop(chain));
        memory.ReadOnlyRange = (driver.Used, driver.Used + 4096);
        Assert.False(queue.TryPushUsed(chain.HeadIndex, 8));
        Assert.Equal(VirtqueueErrorKind.UsedRingNotWritable, queue.Failure!.Kind);
        Assert.Equal(VirtqueuePopResult.Broken, queue.Pop(chain));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    [InlineData(65535)]
    public void Bad_queue_sizes_are_refused(int size)
    {
        var memory = new FakeGuestMemory(1 << 20);
        var config = new VirtqueueConfig(0, (ushort)size, true, new GuestAddress(0), new GuestAddress(0x1000), new GuestAddress(0x2000));
        Assert.False(SplitVirtqueue.TryCreate(config, memory, 0, out _, out var error));
        Assert.Equal(VirtqueueErrorKind.BadRingLayout, error!.Kind);
    }

    [Fact]
    public void Rings_outside_ram_or_misaligned_are_refused()
    {
        var memory = new FakeGuestMemory(1 << 20);
        var outside = new VirtqueueConfig(0, 8, true, new GuestAddress(0), new GuestAddress(0x1000), new GuestAddress((1 << 20) - 8));
        Assert.False(SplitVirtqueue.TryCreate(outside, memory, 0, out _, out var error));
        Assert.Equal(VirtqueueErrorKind.BadRingLayout, error!.Kind);
        var misaligned = new VirtqueueConfig(0, 8, true, new GuestAddress(8), new GuestAddress(0x1000), new GuestAddress(0x2000));
        Assert.False(SplitVirtqueue.TryCreate(misaligned, memory, 0, out _, out error));
        Assert.Equal(VirtqueueErrorKind.BadRingLayout, error!.Kind);
    }

    public static TheoryData<string> HostileCases => new()
    {
        "head out of range", "next out of range", "loop", "self loop", "outside ram", "wrapping address",
        "readable after writable", "indirect not negotiated", "nested indirect", "indirect with next", "indirect bad length",
        "indirect too long", "indirect loop", "indirect next out of range", "indirect table outside ram", "avail too far",
    };

    [Theory]
    [MemberData(nameof(HostileCases))]
    public void Hostile_chains_break_the_queue_with_a_typed_error_and_write_nothing(string hostile)
    {
        ulong features = hostile == "indirect not negotiated" ? VirtioFeatureBits.VIRTIO_RING_F_EVENT_IDX : AllRing;
        var (memory, driver, queue) = Make(size: 8, features);
        const ulong table = 0x20000;
        VirtqueueErrorKind expected;
        switch (hostile)
        {
            case "head out of range":
                driver.Publish(8);
                expected = VirtqueueErrorKind.IndexOutOfRange;
                break;
            case "next out of range":
                driver.WriteDescriptor(0, 0x10000, 8, VringFlags.VRING_DESC_F_NEXT, 9);
                driver.Publish(0);
                expected = VirtqueueErrorKind.IndexOutOfRange;
                break;
            case "loop":
                driver.WriteDescriptor(0, 0x10000, 8, VringFlags.VRING_DESC_F_NEXT, 1);
                driver.WriteDescriptor(1, 0x10000, 8, VringFlags.VRING_DESC_F_NEXT, 2);
                driver.WriteDescriptor(2, 0x10000, 8, VringFlags.VRING_DESC_F_NEXT, 0);
                driver.Publish(0);
                expected = VirtqueueErrorKind.DescriptorLoop;
                break;
            case "self loop":
                driver.WriteDescriptor(3, 0x10000, 8, VringFlags.VRING_DESC_F_NEXT, 3);
                driver.Publish(3);
                expected = VirtqueueErrorKind.DescriptorLoop;
                break;
            case "outside ram":
                driver.AddChain((memory.Size - 4, 8, true));
                expected = VirtqueueErrorKind.OutsideGuestMemory;
                break;
            case "wrapping address":
                driver.AddChain((ulong.MaxValue - 4, 8, true));
                expected = VirtqueueErrorKind.AddressOverflow;
                break;
            case "readable after writable":
                driver.AddChain((0x10000, 8, true), (0x11000, 8, false));
                expected = VirtqueueErrorKind.ReadableAfterWritable;
                break;
            case "indirect not negotiated":
                driver.AddIndirectChain(table, (0x10000, 8, true));
                expected = VirtqueueErrorKind.IndirectNotNegotiated;
                break;
            case "nested indirect":
                driver.WriteDescriptor(table, 0, 0x21000, 16, VringFlags.VRING_DESC_F_INDIRECT, 0);
                driver.WriteDescriptor(0, table, 16, VringFlags.VRING_DESC_F_INDIRECT, 0);
                driver.Publish(0);
                expected = VirtqueueErrorKind.NestedIndirect;
                break;
            case "indirect with next":
                driver.WriteDescriptor(table, 0, 0x10000, 8, 0, 0);
                driver.WriteDescriptor(0, table, 16, VringFlags.VRING_DESC_F_INDIRECT | VringFlags.VRING_DESC_F_NEXT, 1);
                driver.Publish(0);
                expected = VirtqueueErrorKind.IndirectWithNext;
                break;
            case "indirect bad length":
                driver.WriteDescriptor(0, table, 24, VringFlags.VRING_DESC_F_INDIRECT, 0);
                driver.Publish(0);
                expected = VirtqueueErrorKind.BadIndirectLength;
                break;
            case "indirect too long":
                driver.WriteDescriptor(0, table, 16 * 9, VringFlags.VRING_DESC_F_INDIRECT, 0);
                driver.Publish(0);
                expected = VirtqueueErrorKind.ChainTooLong;
                break;
            case "indirect loop":
                driver.WriteDescriptor(table, 0, 0x10000, 8, VringFlags.VRING_DESC_F_NEXT, 1);
                driver.WriteDescriptor(table, 1, 0x10000, 8, VringFlags.VRING_DESC_F_NEXT, 0);
                driver.WriteDescriptor(0, table, 32, VringFlags.VRING_DESC_F_INDIRECT, 0);
                driver.Publish(0);
                expected = VirtqueueErrorKind.DescriptorLoop;
                break;
            case "indirect next out of range":
                driver.WriteDescriptor(table, 0, 0x10000, 8, VringFlags.VRING_DESC_F_NEXT, 2);
                driver.WriteDescriptor(0, table, 32, VringFlags.VRING_DESC_F_INDIRECT, 0);
                driver.Publish(0);
                expected = VirtqueueErrorKind.IndexOutOfRange;
                break;
            case "indirect table outside ram":
                driver.WriteDescriptor(0, memory.Size - 16, 32, VringFlags.VRING_DESC_F_INDIRECT, 0);
                driver.Publish(0);
                expected = VirtqueueErrorKind.OutsideGuestMemory;
                break;
            case "avail too far":
                driver.AvailIdx = 9;
                expected = VirtqueueErrorKind.AvailIndexTooFar;
                break;
            default:
                throw new ArgumentException(hostile);
        }

        var chain = new DescriptorChain();
        int writesBefore = memory.WriteCount;
        Assert.Equal(VirtqueuePopResult.Broken, queue.Pop(chain));
        Assert.Equal(expected, queue.Failure!.Kind);
        Assert.Contains("virtqueue 0", queue.Failure.ToString());
        // Broken for good: no more chains, no used element, no write to guest memory.
        driver.AddChain((0x10000, 8, true));
        Assert.Equal(VirtqueuePopResult.Broken, queue.Pop(chain));
        Assert.False(queue.TryPushUsed(0, 8));
        Assert.Equal(writesBefore, memory.WriteCount);
        Assert.Equal(0, driver.UsedIdx);
        Assert.True(memory.GuardsIntact());
    }

    [Fact]
    public void Lengths_summing_past_4_GiB_are_a_length_overflow()
    {
        // 70 readable buffers of 63 MiB (the same RAM, which the spec does not forbid) sum to more than 2^32 - 1.
        var memory = new FakeGuestMemory(64 << 20);
        var driver = DriverQueue.AtStart(memory, 128);
        Assert.True(SplitVirtqueue.TryCreate(driver.Config, memory, AllRing, out var queue, out _));
        var buffers = Enumerable.Range(0, 70).Select(_ => (0x100000UL, (uint)(63 << 20), false)).ToArray();
        driver.AddChain(buffers);
        Assert.Equal(VirtqueuePopResult.Broken, queue!.Pop(new DescriptorChain()));
        Assert.Equal(VirtqueueErrorKind.LengthOverflow, queue.Failure!.Kind);
    }

    [Fact]
    public void A_chain_longer_than_the_queue_through_direct_descriptors_is_a_loop_or_too_long()
    {
        var (_, driver, queue) = Make(size: 4);
        for (int i = 0; i < 4; i++)
        {
            driver.WriteDescriptor(i, 0x10000, 8, VringFlags.VRING_DESC_F_NEXT, (ushort)((i + 1) % 4));
        }

        driver.Publish(0);
        Assert.Equal(VirtqueuePopResult.Broken, queue.Pop(new DescriptorChain()));
        Assert.Equal(VirtqueueErrorKind.DescriptorLoop, queue.Failure!.Kind);
    }

    [Fact]
    public void Chain_copies_cross_buffer_boundaries()
    {
        var (memory, driver, queue) = Make();
        memory.At(0x10000, 4).Fill(1);
        memory.At(0x11000, 4).Fill(2);
        driver.AddChain((0x10000, 4, false), (0x11000, 4, false), (0x12000, 3, true), (0x13000, 3, true));
        var chain = new DescriptorChain();
        Assert.Equal(VirtqueuePopResult.Chain, queue.Pop(chain));

        byte[] read = new byte[6];
        Assert.True(chain.TryReadReadable(memory, 1, read));
        Assert.Equal(new byte[] { 1, 1, 1, 2, 2, 2 }, read);
        Assert.False(chain.TryReadReadable(memory, 3, new byte[6])); // past the readable part

        Assert.True(chain.TryWriteWritable(memory, 2, [7, 8, 9]));
        Assert.Equal(new byte[] { 0, 0, 7 }, memory.At(0x12000, 3).ToArray());
        Assert.Equal(new byte[] { 8, 9, 0 }, memory.At(0x13000, 3).ToArray());
    }
}
