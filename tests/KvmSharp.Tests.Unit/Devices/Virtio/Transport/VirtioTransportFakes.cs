using KvmSharp.Devices.Bus;
using KvmSharp.Devices.Events;
using KvmSharp.Devices.Memory;
using KvmSharp.Devices.Virtio;

namespace KvmSharp.Tests.Unit.Devices.Virtio.Transport;

/// <summary>A device that records what the transport asks of it, and on which thread.</summary>
internal sealed class FakeVirtioDevice(ulong features = FakeVirtioDevice.DefaultFeatures, params ushort[] queueMaxSizes) : IVirtioDevice
{
    public const ulong DefaultFeatures = VirtioFeatureBits.VIRTIO_RING_F_EVENT_IDX | VirtioFeatureBits.VIRTIO_RING_F_INDIRECT_DESC | (1UL << 5);

    private readonly byte[] _config = [0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80];

    public VirtioDeviceType DeviceType => VirtioDeviceType.Block;

    public ulong AvailableFeatures { get; } = features;

    public IReadOnlyList<ushort> QueueMaxSizes { get; } = queueMaxSizes.Length == 0 ? [256, 128] : queueMaxSizes;

    public List<VirtioActivation> Activations { get; } = [];

    public int Resets { get; private set; }

    public List<(int Queue, int ThreadId)> Notifies { get; } = [];

    public List<(uint Offset, byte[] Data)> ConfigWrites { get; } = [];

    public Exception? ThrowOnActivate { get; set; }

    public bool Disposed { get; private set; }

    public VirtioActivation? Current => Activations.Count > 0 && !ResetSinceActivation ? Activations[^1] : null;

    private bool ResetSinceActivation { get; set; }

    public void ReadConfig(uint offset, Span<byte> data)
    {
        for (int i = 0; i < data.Length; i++)
        {
            ulong at = offset + (ulong)i;
            data[i] = at < (ulong)_config.Length ? _config[at] : (byte)0;
        }
    }

    public void WriteConfig(uint offset, ReadOnlySpan<byte> data) => ConfigWrites.Add((offset, data.ToArray()));

    /// <summary>Activations without a reset since the previous one (a transport bug).</summary>
    public int ActivatedWhileActive { get; private set; }

    public void Activate(VirtioActivation activation)
    {
        if (Current is not null)
        {
            ActivatedWhileActive++;
        }

        Activations.Add(activation);
        ResetSinceActivation = false;
        if (ThrowOnActivate is not null)
        {
            throw ThrowOnActivate;
        }
    }

    /// <summary>Notifications that arrived while the device was not activated (a transport bug).</summary>
    public int NotifiesWhileInactive { get; private set; }

    public void QueueNotify(int queueIndex)
    {
        if (Current is null)
        {
            NotifiesWhileInactive++;
        }

        Notifies.Add((queueIndex, Environment.CurrentManagedThreadId));
    }

    public void Reset()
    {
        Resets++;
        ResetSinceActivation = true;
    }

    public int DisposeCount { get; private set; }

    public void Dispose()
    {
        Disposed = true;
        DisposeCount++;
    }
}

/// <summary>An event loop whose posted work runs when the test says so, on the test's thread, and is counted.</summary>
internal sealed class FakeEventLoop(int capacity = 64) : IEventLoop
{
    private readonly Queue<Action> _posted = new(capacity);

    public int PostedCount { get; private set; }

    public int Pending => _posted.Count;

    public void Post(Action work)
    {
        PostedCount++;
        _posted.Enqueue(work);
    }

    public IDisposable Watch(System.Runtime.InteropServices.SafeHandle fd, Action onReadable) => throw new NotSupportedException();

    public int RunPending()
    {
        int ran = 0;
        while (_posted.TryDequeue(out Action? work))
        {
            work();
            ran++;
        }

        return ran;
    }

    /// <summary>Run the posted work on another thread, as a real loop would.</summary>
    public void RunPendingOnAnotherThread()
    {
        var thread = new Thread(() => RunPending());
        thread.Start();
        thread.Join();
    }
}

/// <summary>Takes doorbells (like KVM_IOEVENTFD) or refuses them all (returns null), and lets the test ring them.</summary>
internal sealed class FakeNotifyRegistrar(bool accept = true) : IGuestNotifyRegistrar
{
    public List<Doorbell> Registered { get; } = [];

    public IEnumerable<Doorbell> Active => Registered.Where(doorbell => !doorbell.Removed);

    public IDisposable? RegisterMmioNotify(ulong address, int length, Action onNotify)
    {
        if (!accept)
        {
            return null;
        }

        var doorbell = new Doorbell(address, length, onNotify);
        Registered.Add(doorbell);
        return doorbell;
    }

    /// <summary>Doorbells registered with an eventfd another process reads (a vhost-user back end).</summary>
    public List<(ulong Address, int Length, EventFd EventFd)> ExternalDoorbells { get; } = [];

    public IDisposable? RegisterMmioNotify(ulong address, int length, EventFd eventFd)
    {
        if (!accept)
        {
            return null;
        }

        ExternalDoorbells.Add((address, length, eventFd));
        return new Doorbell(address, length, eventFd.Signal);
    }

    internal sealed class Doorbell(ulong address, int length, Action onNotify) : IDisposable
    {
        public ulong Address { get; } = address;

        public int Length { get; } = length;

        public bool Removed { get; private set; }

        /// <summary>What the event loop does when the ioeventfd becomes readable.</summary>
        public void Ring() => onNotify();

        public void Dispose() => Removed = true;
    }
}

/// <summary>Guest memory the transport only passes on; any access is refused.</summary>
internal sealed class NoGuestMemory : IGuestMemory
{
    public bool TryRead(GuestAddress address, Span<byte> destination) => false;

    public bool TryWrite(GuestAddress address, ReadOnlySpan<byte> source) => false;

    public bool TryGetHostAddress(GuestAddress address, ulong length, bool forWrite, out nint hostAddress)
    {
        hostAddress = 0;
        return false;
    }

    public void CommitWrite(GuestAddress address, ulong length)
    {
    }
}

internal sealed class RecordingInterruptLine : IInterruptLine
{
    public bool Level { get; private set; }

    public int Raised { get; private set; }

    public void SetLevel(bool asserted)
    {
        if (asserted && !Level)
        {
            Raised++;
        }

        Level = asserted;
    }
}

/// <summary>A registrar whose host refuses every doorbell with an exception (e.g. an ioctl error).</summary>
internal sealed class ThrowingNotifyRegistrar : IGuestNotifyRegistrar
{
    public int Attempts { get; private set; }

    public IDisposable? RegisterMmioNotify(ulong address, int length, Action onNotify)
    {
        Attempts++;
        throw new IOException("KVM_IOEVENTFD failed: EEXIST");
    }
}
