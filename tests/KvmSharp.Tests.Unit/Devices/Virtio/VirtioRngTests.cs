using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Rng;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio;

public sealed class VirtioRngTests
{
    private static (FakeGuestMemory Memory, DriverQueue Driver, VirtioRng Rng, RecordingVirtioInterrupt Interrupt, RecordingTransportStatus Transport) Make()
    {
        var memory = new FakeGuestMemory(1 << 20);
        var driver = DriverQueue.AtStart(memory, 16);
        var rng = new VirtioRng(queueSize: 16);
        var interrupt = new RecordingVirtioInterrupt();
        var transport = new RecordingTransportStatus();
        rng.Activate(new VirtioActivation(rng.AvailableFeatures | VirtioFeatureBits.VIRTIO_F_VERSION_1, [driver.Config], memory, interrupt, transport));
        return (memory, driver, rng, interrupt, transport);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Writable_buffers_are_filled_with_random_bytes_and_returned_with_their_length(bool hostAddresses)
    {
        var (memory, driver, rng, interrupt, transport) = Make();
        memory.HostAddresses = hostAddresses;
        driver.AddChain((0x40000, 64, true), (0x50000, 5000, true));
        driver.AddChain((0x60000, 16, true));

        rng.QueueNotify(0);

        Assert.Equal(2, driver.UsedIdx);
        Assert.Equal(5064u, driver.UsedElement(0).Length);
        Assert.Equal(16u, driver.UsedElement(1).Length);
        // 5064 random bytes are all zero with probability 2^-40000; two buffers never come out equal.
        Assert.True(memory.At(0x50000, 5000).ContainsAnyExcept((byte)0));
        Assert.False(memory.At(0x40000, 16).SequenceEqual(memory.At(0x60000, 16)));
        Assert.False(memory.At(0x50000 + 5000, 16).ContainsAnyExcept((byte)0)); // nothing past the buffer
        Assert.Equal(5080, rng.BytesServed);
        Assert.Equal((2, 5080, 0, 0), (rng.Io.ReadOps, rng.Io.ReadBytes, rng.Io.WriteOps, rng.Io.WriteBytes)); // the metrics' counters
        Assert.Equal(1, interrupt.QueueNotifications(0));
        Assert.False(transport.NeedsReset);
        Assert.Equal(hostAddresses, memory.Commits.Count > 0);
    }

    [Fact]
    public void One_request_gets_at_most_the_per_request_limit()
    {
        var (memory, driver, rng, _, _) = Make();
        driver.AddChain((0x40000, 0x20000, true));
        rng.QueueNotify(0);
        Assert.Equal((uint)VirtioRng.MaxBytesPerRequest, driver.UsedElement(0).Length);
        Assert.False(memory.At(0x40000 + VirtioRng.MaxBytesPerRequest, 0x20000 - VirtioRng.MaxBytesPerRequest).ContainsAnyExcept((byte)0));
    }

    [Fact]
    public void A_buffer_in_read_only_memory_needs_a_reset_and_nothing_is_written()
    {
        var (memory, driver, rng, _, transport) = Make();
        memory.HostAddresses = false;
        memory.ReadOnlyRange = (0x40000, 0x41000);
        driver.AddChain((0x40000, 64, true));
        rng.QueueNotify(0);
        Assert.Single(transport.Reasons);
        Assert.Equal(0, driver.UsedIdx);
        Assert.False(memory.At(0x40000, 64).ContainsAnyExcept((byte)0));
    }

    [Fact]
    public void After_reset_notifications_are_ignored()
    {
        var (_, driver, rng, _, _) = Make();
        rng.Reset();
        driver.AddChain((0x40000, 64, true));
        rng.QueueNotify(0);
        Assert.Equal(0, driver.UsedIdx);
        Assert.Equal(0, rng.BytesServed);
    }
}
