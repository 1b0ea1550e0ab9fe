using System.Collections.Concurrent;
using KvmSharp.Devices.Events;
using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Transport;
using KvmSharp.Tests.Unit.Devices.Pci;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio.Transport;

/// <summary>
/// A real loop thread delivers kicks that another vCPU hammers in while the driver resets and re-initializes
/// the device over and over: QueueNotify must never overlap Reset or Activate, nor arrive while inactive.
/// </summary>
public sealed class VirtioPciResetRaceTests
{
    [Fact]
    public void Notifications_never_reach_the_device_while_it_resets_activates_or_is_inactive()
    {
        var device = new StrictDevice();
        using var loop = new ThreadedEventLoop();
        var pci = new PciRig();
        var function = new VirtioPciFunction(device, new FakeMsiController(), new NoGuestMemory(), loop, notifyRegistrar: null);
        var driver = new LinuxVirtioPciDriver(pci, pci.Root.Attach(function).Device);
        ulong[] doorbells = driver.InitializeToDriverOk();

        using var stop = new CancellationTokenSource();
        var kicker = new Thread(() =>
        {
            // Another vCPU: kicks through the MMIO bus, which posts to the loop.
            while (!stop.IsCancellationRequested)
            {
                pci.Mmio.Write16(doorbells[0], 0);
                pci.Mmio.Write16(doorbells[1], 1);
                Thread.Yield(); // a kick stream, not a flood that buries the loop
            }
        });
        kicker.Start();
        for (int round = 0; round < 200; round++)
        {
            driver.InitializeToDriverOk(); // starts with a reset
        }

        stop.Cancel();
        kicker.Join();
        loop.Drain();

        Assert.Equal(0, device.Violations);
        Assert.True(device.Notifications > 0, "no notification was delivered at all");
        Assert.Equal(201, device.Activations);
    }

    private sealed class StrictDevice : IVirtioDevice
    {
        private const int Inactive = 0, Activating = 1, Active = 2, Resetting = 3;
        private int _state;
        private int _violations;
        private int _notifications;

        public int Violations => Volatile.Read(ref _violations);

        public int Notifications => Volatile.Read(ref _notifications);

        public int Activations { get; private set; }

        public VirtioDeviceType DeviceType => VirtioDeviceType.Entropy;

        public ulong AvailableFeatures => 0;

        public IReadOnlyList<ushort> QueueMaxSizes { get; } = [64, 64];

        public void ReadConfig(uint offset, Span<byte> data) => data.Clear();

        public void WriteConfig(uint offset, ReadOnlySpan<byte> data)
        {
        }

        public void Activate(VirtioActivation activation)
        {
            Volatile.Write(ref _state, Activating);
            Thread.Sleep(1); // long enough for a racing notification to show up
            Activations++;
            Volatile.Write(ref _state, Active);
        }

        public void QueueNotify(int queueIndex)
        {
            if (Volatile.Read(ref _state) != Active)
            {
                Interlocked.Increment(ref _violations);
            }

            Interlocked.Increment(ref _notifications);
            Thread.SpinWait(50);
            if (Volatile.Read(ref _state) != Active)
            {
                Interlocked.Increment(ref _violations);
            }
        }

        public void Reset()
        {
            Volatile.Write(ref _state, Resetting);
            Thread.Sleep(1);
            Volatile.Write(ref _state, Inactive);
        }

        public void Dispose()
        {
        }
    }

    /// <summary>One loop thread running posted work in order, as the VMM's epoll loop does.</summary>
    private sealed class ThreadedEventLoop : IEventLoop, IDisposable
    {
        private readonly BlockingCollection<Action> _work = new();
        private readonly Thread _thread;

        public ThreadedEventLoop()
        {
            _thread = new Thread(() =>
            {
                foreach (Action work in _work.GetConsumingEnumerable())
                {
                    work();
                }
            }) { IsBackground = true, Name = "test event loop" };
            _thread.Start();
        }

        public void Post(Action work) => _work.Add(work);

        public IDisposable Watch(System.Runtime.InteropServices.SafeHandle fd, Action onReadable) => throw new NotSupportedException();

        public void Drain()
        {
            using var done = new ManualResetEventSlim();
            _work.Add(done.Set);
            done.Wait();
        }

        public void Dispose()
        {
            _work.CompleteAdding();
            _thread.Join();
            _work.Dispose();
        }
    }
}
