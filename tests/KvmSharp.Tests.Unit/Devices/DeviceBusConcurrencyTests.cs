using System.Buffers.Binary;
using System.Collections.Concurrent;
using KvmSharp.Devices.Bus;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices;

public sealed class DeviceBusConcurrencyTests
{
    private const int Slots = 16;
    private const ulong SlotStride = 0x100;
    private const ulong WindowLength = 0x40;
    private const ulong ChurnWindowStart = 0x40; // right after the stable window: adjacent ranges
    private const ulong HoleStart = 0x80;        // never mapped
    private const uint ChurnIdBase = 1000;

    private static readonly TimeSpan StressDuration = TimeSpan.FromMilliseconds(400);
    private static readonly TimeSpan JoinTimeout = TimeSpan.FromSeconds(20);

    [Fact]
    public void Concurrent_dispatch_while_registering_always_reaches_the_right_device()
    {
        var bus = new DeviceBus("mmio");
        var failures = new ConcurrentQueue<string>();
        var stable = new IdentityDevice[Slots];
        for (int i = 0; i < Slots; i++)
        {
            stable[i] = new IdentityDevice((uint)i, failures);
            bus.Register((ulong)i * SlotStride, WindowLength, stable[i], $"stable{i}");
        }

        using var stop = new CancellationTokenSource();
        long dispatches = 0;
        long churnHits = 0;
        long registrations = 0;

        var readers = new Thread[Math.Clamp(Environment.ProcessorCount - 1, 2, 4)];
        for (int t = 0; t < readers.Length; t++)
        {
            int seed = t;
            readers[t] = new Thread(() =>
            {
                var random = new Random(seed);
                Span<byte> data = stackalloc byte[8];
                long localDispatches = 0;
                long localChurnHits = 0;
                while (!stop.IsCancellationRequested && failures.IsEmpty)
                {
                    int slot = random.Next(Slots);
                    int kind = random.Next(3);
                    ulong offset = (ulong)random.Next((int)WindowLength);
                    ulong windowStart = kind switch { 0 => 0, 1 => ChurnWindowStart, _ => HoleStart };
                    ulong address = (ulong)slot * SlotStride + windowStart + offset;

                    data.Clear();
                    bool handled = bus.Read(address, data);
                    uint id = BinaryPrimitives.ReadUInt32LittleEndian(data);
                    uint seenOffset = BinaryPrimitives.ReadUInt32LittleEndian(data[4..]);
                    switch (kind)
                    {
                        case 0 when !handled || id != (uint)slot || seenOffset != offset:
                            failures.Enqueue($"stable read at 0x{address:x}: handled={handled} id={id} offset={seenOffset}");
                            break;
                        case 1 when handled && (id != ChurnIdBase + (uint)slot || seenOffset != offset):
                            failures.Enqueue($"churn read at 0x{address:x}: id={id} offset={seenOffset}");
                            break;
                        case 1 when !handled && data.IndexOfAnyExcept((byte)0xff) >= 0:
                            failures.Enqueue($"unmapped churn read at 0x{address:x} did not return 0xff");
                            break;
                        case 2 when handled || data.IndexOfAnyExcept((byte)0xff) >= 0:
                            failures.Enqueue($"hole read at 0x{address:x} was handled={handled}");
                            break;
                    }

                    if (kind == 1 && handled)
                    {
                        localChurnHits++;
                    }

                    // Writes carry the identity the writer expects; the device checks it on arrival.
                    uint expectedId = kind == 1 ? ChurnIdBase + (uint)slot : (uint)slot;
                    BinaryPrimitives.WriteUInt32LittleEndian(data, expectedId);
                    BinaryPrimitives.WriteUInt32LittleEndian(data[4..], (uint)offset);
                    bool written = bus.Write(address, data);
                    if ((kind == 0 && !written) || (kind == 2 && written))
                    {
                        failures.Enqueue($"write at 0x{address:x} kind {kind} returned {written}");
                    }

                    localDispatches += 2;
                }

                Interlocked.Add(ref dispatches, localDispatches);
                Interlocked.Add(ref churnHits, localChurnHits);
            });
        }

        var registrar = new Thread(() =>
        {
            var churn = new IdentityDevice[Slots];
            for (int i = 0; i < Slots; i++)
            {
                churn[i] = new IdentityDevice(ChurnIdBase + (uint)i, failures);
            }

            while (!stop.IsCancellationRequested && failures.IsEmpty)
            {
                for (int i = 0; i < Slots; i++)
                {
                    bus.Register((ulong)i * SlotStride + ChurnWindowStart, WindowLength, churn[i], $"churn{i}");
                    registrations++;
                }

                // A refused registration in the middle of traffic must not disturb anything.
                try
                {
                    bus.Register(ChurnWindowStart - 1, 2, new IdentityDevice(9999, failures), "overlapping");
                    failures.Enqueue("overlapping registration was accepted");
                }
                catch (ArgumentException)
                {
                }

                for (int i = 0; i < Slots; i++)
                {
                    bus.Unregister(churn[i]);
                }
            }
        });

        foreach (Thread reader in readers)
        {
            reader.Start();
        }

        registrar.Start();
        Thread.Sleep(StressDuration);
        stop.Cancel();

        foreach (Thread reader in readers)
        {
            Assert.True(reader.Join(JoinTimeout), "a dispatch thread did not stop");
        }

        Assert.True(registrar.Join(JoinTimeout), "the registration thread did not stop");
        Assert.Empty(failures);
        Assert.True(dispatches > 0, "no dispatch happened");
        Assert.True(registrations >= Slots, "no registration cycle completed");
        Assert.True(churnHits > 0, "no dispatch reached a device registered during the run");

        // Only the stable ranges remain: every churn registration was undone.
        Assert.Equal(Slots, bus.Ranges.Count);
        Assert.All(stable, device => Assert.True(device.Hits > 0));
    }

    /// <summary>Answers reads with its id and the offset it saw; checks that writes carry the same pair.</summary>
    private sealed class IdentityDevice(uint id, ConcurrentQueue<string> failures) : IBusDevice
    {
        private long _hits;

        public long Hits => Interlocked.Read(ref _hits);

        public void Read(ulong offset, Span<byte> data)
        {
            Interlocked.Increment(ref _hits);
            BinaryPrimitives.WriteUInt32LittleEndian(data, id);
            BinaryPrimitives.WriteUInt32LittleEndian(data[4..], (uint)offset);
        }

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            Interlocked.Increment(ref _hits);
            uint expectedId = BinaryPrimitives.ReadUInt32LittleEndian(data);
            uint expectedOffset = BinaryPrimitives.ReadUInt32LittleEndian(data[4..]);
            if (expectedId != id || expectedOffset != offset)
            {
                failures.Enqueue($"device {id} got a write meant for device {expectedId} (offset {offset}, expected {expectedOffset})");
            }
        }
    }
}
