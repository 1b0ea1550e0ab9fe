using CsCheck;
using KvmSharp.Devices.Memory;
using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Queues;
using KvmSharp.Devices.Virtio.Rng;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio;

/// <summary>
/// Random descriptor tables, indirect tables, avail rings and indices, as a buggy or hostile driver
/// might write them: the only outcomes allowed are chains that are served (each buffer inside RAM,
/// readable before writable) or a typed failure (the device: MarkNeedsReset), never an exception,
/// and never a byte written outside guest RAM (the guard regions stay intact).
/// </summary>
public sealed class HostileQueuePropertyTests
{
    private const long Iterations = 3_000;
    private const ulong RamSize = 1 << 20;
    internal const ulong Buffers = 0x40000;
    private const ulong IndirectTable = 0x80000;

    internal sealed record RawDescriptor(int Address, int Length, int Flags, int Next);

    internal sealed record Scenario(
        ushort Size, bool EventIdx, bool Indirect, bool SplitHostMemory, RawDescriptor[] Table, RawDescriptor[] IndirectEntries, int[] AvailRing, int AvailIdx);

    private static readonly Gen<RawDescriptor> DescriptorGen =
        Gen.Select(Gen.Int[0, 6], Gen.Int[0, 6], Gen.Int[0, 7], Gen.Int[0, 18], (a, l, f, n) => new RawDescriptor(a, l, f, n));

    internal static readonly Gen<Scenario> ScenarioGen =
        Gen.Select(Gen.OneOf<ushort>(1, 2, 4, 8, 16), Gen.Bool, Gen.Bool, Gen.Bool, DescriptorGen.Array[16], DescriptorGen.Array[16], Gen.Int[0, 18].Array[16], Gen.Int[0, 20],
            (size, eventIdx, indirect, split, table, entries, ring, idx) => new Scenario(size, eventIdx, indirect, split, table, entries, ring, idx));

    private static ulong AddressOf(int choice, int salt, DriverQueue driver) => choice switch
    {
        0 => Buffers + (ulong)salt * 0x1000,
        1 => IndirectTable,
        2 => RamSize - 8,
        3 => RamSize + 0x1000,
        4 => ulong.MaxValue - 3,
        5 => driver.Used,
        _ => Buffers + 0xFF0, // crosses the split boundary when it is on
    };

    private static uint LengthOf(int choice, int salt) => choice switch
    {
        0 => 0,
        1 => 8,
        2 => 16 * (uint)(salt % 20 + 1),
        3 => 0x1000,
        4 => uint.MaxValue,
        5 => 17,
        _ => 0x8000_0000,
    };

    internal static (FakeGuestMemory Memory, DriverQueue Driver, ulong Features) Build(Scenario s)
    {
        var memory = new FakeGuestMemory(RamSize);
        if (s.SplitHostMemory)
        {
            memory.HostAddressBoundary = Buffers + 0x1000;
        }

        var driver = DriverQueue.AtStart(memory, s.Size);
        for (int i = 0; i < s.Size; i++)
        {
            var d = s.Table[i];
            driver.WriteDescriptor(i, AddressOf(d.Address, i, driver), LengthOf(d.Length, d.Next), (ushort)d.Flags, (ushort)d.Next);
        }

        for (int i = 0; i < s.IndirectEntries.Length; i++)
        {
            var d = s.IndirectEntries[i];
            driver.WriteDescriptor(IndirectTable, i, AddressOf(d.Address, i, driver), LengthOf(d.Length, d.Next), (ushort)d.Flags, (ushort)d.Next);
        }

        for (int i = 0; i < s.AvailIdx; i++)
        {
            driver.Publish((ushort)s.AvailRing[i % s.AvailRing.Length]);
        }

        ulong features = (s.EventIdx ? VirtioFeatureBits.VIRTIO_RING_F_EVENT_IDX : 0) | (s.Indirect ? VirtioFeatureBits.VIRTIO_RING_F_INDIRECT_DESC : 0);
        return (memory, driver, features);
    }

    [Fact]
    public void Random_rings_give_valid_chains_or_a_typed_failure_and_never_write_outside_ram()
    {
        int broken = 0, served = 0;
        ScenarioGen.Sample(s =>
        {
            var (memory, driver, features) = Build(s);
            Assert.True(SplitVirtqueue.TryCreate(driver.Config, memory, features, out var queue, out var error), error?.ToString());
            var chain = new DescriptorChain();
            var pattern = new byte[64];
            Array.Fill(pattern, (byte)0x5A);
            for (int pops = 0; ; pops++)
            {
                Assert.True(pops <= s.Size + 1, "the queue handed out more chains than were published");
                var result = queue!.Pop(chain);
                if (result == VirtqueuePopResult.Empty)
                {
                    Assert.Null(queue.Failure);
                    break;
                }

                if (result == VirtqueuePopResult.Broken)
                {
                    Assert.NotNull(queue.Failure);
                    Assert.Equal(VirtqueuePopResult.Broken, queue.Pop(chain));
                    Interlocked.Increment(ref broken);
                    break;
                }

                ulong readable = 0, writable = 0;
                for (int i = 0; i < chain.Count; i++)
                {
                    var segment = chain.Segments[i];
                    Assert.True(segment.Address.Value + segment.Length <= RamSize, $"segment {segment} outside RAM");
                    Assert.Equal(i >= chain.ReadableCount, segment.DeviceWritable);
                    if (segment.DeviceWritable)
                    {
                        writable += segment.Length;
                    }
                    else
                    {
                        readable += segment.Length;
                    }
                }

                Assert.Equal(readable, chain.ReadableLength);
                Assert.Equal(writable, chain.WritableLength);
                // A device writes what it may; a refused write is the device's cue to need a reset, never a stray write.
                chain.TryWriteWritable(memory, 0, pattern.AsSpan(0, (int)Math.Min(writable, (ulong)pattern.Length)));
                if (queue.TryPushUsed(chain.HeadIndex, 1))
                {
                    queue.ShouldNotify();
                }

                Interlocked.Increment(ref served);
            }

            Assert.True(memory.GuardsIntact(), "a write landed outside guest RAM");
        }, iter: Iterations, threads: 1);

        // The generator must reach both outcomes, or the property proves little.
        Assert.True(broken > 0 && served > 0, $"broken {broken}, served {served}");
    }

    [Fact]
    public void Random_rings_given_to_virtio_rng_are_served_or_need_reset()
    {
        int resets = 0;
        ScenarioGen.Sample(s =>
        {
            var (memory, driver, features) = Build(s);
            var transport = new RecordingTransportStatus();
            var interrupt = new RecordingVirtioInterrupt();
            using var rng = new VirtioRng(queueSize: s.Size);
            rng.Activate(new VirtioActivation(features, [driver.Config], memory, interrupt, transport));
            rng.QueueNotify(0);
            if (transport.NeedsReset)
            {
                Interlocked.Increment(ref resets);
                Assert.Single(transport.Reasons);
                Assert.Contains("virtqueue 0", transport.Reasons.First());
            }
            else
            {
                Assert.Equal(s.AvailIdx, driver.UsedIdx);
            }

            Assert.True(memory.GuardsIntact(), "a write landed outside guest RAM");
        }, iter: Iterations / 3, threads: 1);

        Assert.True(resets > 0);
    }
}
