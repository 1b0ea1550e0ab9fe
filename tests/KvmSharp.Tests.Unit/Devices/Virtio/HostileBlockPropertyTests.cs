using System.Buffers.Binary;
using CsCheck;
using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Block;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio;

/// <summary>
/// virtio-blk (with its I/O workers) against random rings: the hostile rings of <see cref="HostileQueuePropertyTests"/>
/// over buffers that hold request headers of every type, and well-formed rings of random requests (any type, sector,
/// length). Each published request is either served (used ring, a valid status byte) or the device asks for a reset;
/// nothing is written outside guest RAM; Reset then leaves no request touching guest memory, and the same device
/// serves the next driver.
/// </summary>
public sealed class HostileBlockPropertyTests
{
    private const int ImageSectors = 64;
    private static readonly uint[] Types = [0, 1, 4, 8, 11, 13, 99];

    internal sealed record Request(int Type, int Sector, int DataBytes);

    private static readonly Gen<Request> RequestGen =
        Gen.Select(Gen.Int[0, Types.Length - 1], Gen.Int[0, ImageSectors + 8], Gen.OneOf(Gen.Int[0, 8].Select(n => n * 512), Gen.Int[0, 4096]),
            (type, sector, bytes) => new Request(type, sector, bytes));

    [Fact]
    public void Random_rings_given_to_virtio_blk_are_served_or_need_reset()
    {
        using var image = new TempImage(ImageSectors);
        using var device = new VirtioBlock(BlockImage.Open(new DriveSpec(image.Path)), workerCount: 3, queueSize: 16);
        int resets = 0, served = 0;
        var kinds = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        Gen.Select(Gen.Bool, HostileQueuePropertyTests.ScenarioGen, RequestGen.Array[1, 5]).Sample((wellFormed, hostile, requests) =>
        {
            var (memory, driver, features, published) = wellFormed ? WellFormed(requests) : Hostile(hostile);
            var transport = new RecordingTransportStatus();
            device.Activate(new VirtioActivation(features, [driver.Config], memory, new RecordingVirtioInterrupt(), transport));
            device.QueueNotify(0);
            bool settled = SpinWait.SpinUntil(() => transport.NeedsReset || driver.UsedIdx == published, TimeSpan.FromSeconds(20));
            device.Reset();
            int writes = memory.WriteCount;
            Assert.True(settled, $"used {driver.UsedIdx} of {published} and no reset");
            Assert.Equal(0, device.InFlight);
            Assert.True(transport.Reasons.Count <= 1);
            Assert.True(memory.GuardsIntact(), "a write landed outside guest RAM");
            Thread.Sleep(0);
            Assert.Equal(writes, memory.WriteCount);
            if (wellFormed)
            {
                Assert.False(transport.NeedsReset, transport.Reasons.FirstOrDefault());
                for (int i = 0; i < published; i++)
                {
                    byte status = memory.At(StatusOf(i), 1)[0];
                    Assert.True(status <= (byte)VirtioBlockStatus.VIRTIO_BLK_S_UNSUPP, $"request {i} ({requests[i]}) status {status}");
                }
            }

            if (transport.NeedsReset)
            {
                Interlocked.Increment(ref resets);
                string reason = transport.Reasons.First();
                kinds.AddOrUpdate(reason.Split(':').ElementAtOrDefault(1)?.Trim() ?? reason, 1, (_, n) => n + 1);
            }

            Interlocked.Add(ref served, driver.UsedIdx);
        }, iter: 400, threads: 1);

        Assert.True(resets > 0 && served > 0,
            $"rings that needed a reset {resets} ({string.Join(", ", kinds.Select(k => $"{k.Key} {k.Value}"))}), requests served {served}");
    }

    private static ulong StatusOf(int request) => 0x90000 + (ulong)request;

    private static (FakeGuestMemory, DriverQueue, ulong, int) Hostile(HostileQueuePropertyTests.Scenario scenario)
    {
        var (memory, driver, features) = HostileQueuePropertyTests.Build(scenario);
        for (int page = 0; page < 16; page++)
        {
            var header = memory.At(HostileQueuePropertyTests.Buffers + (ulong)page * 0x1000, 16);
            BinaryPrimitives.WriteUInt32LittleEndian(header, Types[page % Types.Length]);
            BinaryPrimitives.WriteUInt64LittleEndian(header[8..], (ulong)page * 3);
        }

        return (memory, driver, features, scenario.AvailIdx);
    }

    private static (FakeGuestMemory, DriverQueue, ulong, int) WellFormed(Request[] requests)
    {
        var memory = new FakeGuestMemory(1 << 20);
        var driver = DriverQueue.AtStart(memory, 16);
        for (int i = 0; i < requests.Length; i++)
        {
            var request = requests[i];
            ulong header = 0x40000 + (ulong)i * 16;
            BinaryPrimitives.WriteUInt32LittleEndian(memory.At(header, 4), Types[request.Type]);
            BinaryPrimitives.WriteUInt64LittleEndian(memory.At(header + 8, 8), (ulong)request.Sector);
            ulong data = 0x50000 + (ulong)i * 0x2000;
            // Writes, discards and write-zeroes carry readable data; reads and get-id writable data.
            bool dataWritable = Types[request.Type] is 0 or 8 or 99;
            var buffers = new List<(ulong, uint, bool)> { (header, 16, false) };
            if (request.DataBytes > 0)
            {
                buffers.Add((data, (uint)request.DataBytes, dataWritable));
            }

            buffers.Add((StatusOf(i), 1, true));
            memory.At(StatusOf(i), 1)[0] = 0xFF;
            driver.AddChain([.. buffers]);
        }

        return (memory, driver, VirtioFeatureBits.VIRTIO_RING_F_EVENT_IDX | VirtioFeatureBits.VIRTIO_RING_F_INDIRECT_DESC, requests.Length);
    }
}
