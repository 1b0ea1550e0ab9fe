using System.Buffers.Binary;
using CsCheck;
using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Block;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio;

/// <summary>
/// The random rings of <see cref="HostileQueuePropertyTests"/> given to virtio-blk (with its I/O workers),
/// over buffers that hold request headers of every type: each published request is either served (used
/// ring) or the device asks for a reset; nothing is written outside guest RAM; Reset then leaves no
/// request touching guest memory, and the same device serves the next driver.
/// </summary>
public sealed class HostileBlockPropertyTests
{
    private static readonly uint[] Types = [0, 1, 4, 8, 11, 13, 99];

    [Fact]
    public void Random_rings_given_to_virtio_blk_are_served_or_need_reset()
    {
        using var image = new TempImage(64);
        using var device = new VirtioBlock(BlockImage.Open(new DriveSpec(image.Path)), workerCount: 3, queueSize: 16);
        int resets = 0, served = 0;
        HostileQueuePropertyTests.ScenarioGen.Sample(s =>
        {
            var (memory, driver, features) = HostileQueuePropertyTests.Build(s);
            for (int page = 0; page < 16; page++)
            {
                var header = memory.At(HostileQueuePropertyTests.Buffers + (ulong)page * 0x1000, 16);
                BinaryPrimitives.WriteUInt32LittleEndian(header, Types[page % Types.Length]);
                BinaryPrimitives.WriteUInt64LittleEndian(header[8..], (ulong)page * 3);
            }

            var transport = new RecordingTransportStatus();
            device.Activate(new VirtioActivation(features, [driver.Config], memory, new RecordingVirtioInterrupt(), transport));
            device.QueueNotify(0);
            bool settled = SpinWait.SpinUntil(() => transport.NeedsReset || driver.UsedIdx == s.AvailIdx, TimeSpan.FromSeconds(20));
            device.Reset();
            int writes = memory.WriteCount;
            Assert.True(settled, $"used {driver.UsedIdx} of {s.AvailIdx} and no reset");
            Assert.Equal(0, device.InFlight);
            Assert.True(transport.Reasons.Count <= 1);
            Assert.True(memory.GuardsIntact(), "a write landed outside guest RAM");
            Thread.Sleep(0);
            Assert.Equal(writes, memory.WriteCount);
            if (transport.NeedsReset)
            {
                Interlocked.Increment(ref resets);
            }
            else if (s.AvailIdx > 0)
            {
                Interlocked.Increment(ref served);
            }
        }, iter: 400, threads: 1);

        Assert.True(resets > 0 && served > 0, $"resets {resets}, served {served}");
    }
}
