using System.Buffers.Binary;
using System.Text;
using KvmSharp.Devices.Events;
using KvmSharp.Devices.Memory;
using KvmSharp.Devices.VhostUser;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace KvmSharp.Devices.Virtio.Fs;

/// <summary>
/// virtio-fs (device type 26) as a vhost-user front end: the queues (one high-priority queue, one request
/// queue) are served by a back end such as virtiofsd, which maps guest RAM itself. The device offers the
/// back end's ring features, hands it memory and rings once the driver is ready, and takes the rings back
/// on reset. Each queue's doorbell is an eventfd the transport registers as the ioeventfd, so a guest kick
/// goes to the back end without passing through the VMM (<see cref="IVirtioQueueDoorbells"/>); the back
/// end's call eventfd is watched on the event loop and becomes the queue's interrupt through the transport,
/// which honours MSI-X masking and the vector the driver chose.
/// </summary>
/// <remarks>
/// The back end writes guest memory directly, so its writes reach neither the dirty log nor page-track
/// notifiers (as with any vhost back end); a VM that relies on either for shared pages should not use a share.
/// </remarks>
public sealed class VirtioFs : IVirtioDevice, IVirtioQueueDoorbells
{
    /// <summary>Queue size (QEMU's vhost-user-fs default).</summary>
    public const ushort DefaultQueueSize = 128;

    /// <summary>Request queues (QEMU's C virtiofsd serves one).</summary>
    public const int RequestQueues = 1;

    /// <summary>The ring features passed through from the back end; VERSION_1 the transport adds.</summary>
    public const ulong PassThroughFeatures = VirtioFeatureBits.VIRTIO_RING_F_EVENT_IDX | VirtioFeatureBits.VIRTIO_RING_F_INDIRECT_DESC;

    private readonly VhostUserFrontend _frontend;
    private readonly Func<IReadOnlyList<VhostUserMemoryRegion>> _memoryTable;
    private readonly IDisposable? _backend;
    private readonly ILogger _logger;
    private readonly byte[] _config = new byte[System.Runtime.InteropServices.Marshal.SizeOf<virtio_fs_config>()];
    private readonly EventFd[] _kicks;
    private readonly EventFd[] _calls;
    private readonly IDisposable[] _callWatches;
    private readonly Lock _lock = new();
    private readonly List<int> _started = new();
    private IVirtioInterrupt? _interrupt;
    private bool _disposed;

    /// <param name="tag">The mount tag (checked by <see cref="ShareOptions.TryValidateTag"/>).</param>
    /// <param name="frontend">A front end that has done its <see cref="VhostUserFrontend.Handshake"/>; the device owns it.</param>
    /// <param name="memoryTable">Guest RAM as memfd regions, asked for at each activation.</param>
    /// <param name="eventLoop">Where the back end's call eventfds are watched.</param>
    /// <param name="backend">The back end's process, stopped when the device is disposed (after the connection closed).</param>
    public VirtioFs(string tag, VhostUserFrontend frontend, Func<IReadOnlyList<VhostUserMemoryRegion>> memoryTable, IEventLoop eventLoop, ILogger<VirtioFs>? logger = null, IDisposable? backend = null, ushort queueSize = DefaultQueueSize)
    {
        if (!ShareOptions.TryValidateTag(tag, out string? error))
        {
            throw new ArgumentException(error, nameof(tag));
        }

        ArgumentNullException.ThrowIfNull(frontend);
        ArgumentNullException.ThrowIfNull(memoryTable);
        ArgumentNullException.ThrowIfNull(eventLoop);
        Tag = tag;
        _frontend = frontend;
        _memoryTable = memoryTable;
        _backend = backend;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        Encoding.UTF8.GetBytes(tag, _config);
        BinaryPrimitives.WriteUInt32LittleEndian(_config.AsSpan(virtio_fs_config.TagLength), RequestQueues);

        int queues = 1 + RequestQueues;
        QueueMaxSizes = Enumerable.Repeat(queueSize, queues).ToArray();
        _kicks = new EventFd[queues];
        _calls = new EventFd[queues];
        _callWatches = new IDisposable[queues];
        for (int i = 0; i < queues; i++)
        {
            _kicks[i] = EventFd.Create();
            _calls[i] = EventFd.Create();
            int queue = i;
            _callWatches[i] = eventLoop.Watch(_calls[i], () => OnBackendCall(queue));
        }
    }

    public string Tag { get; }

    public VirtioDeviceType DeviceType => VirtioDeviceType.Fs;

    public ulong AvailableFeatures => _frontend.BackendFeatures & PassThroughFeatures;

    public IReadOnlyList<ushort> QueueMaxSizes { get; }

    /// <summary>Rings the back end is serving now.</summary>
    public int StartedQueues
    {
        get
        {
            lock (_lock)
            {
                return _started.Count;
            }
        }
    }

    /// <summary>Interrupts the back end raised so far (call eventfd wake-ups).</summary>
    public long BackendCalls => Interlocked.Read(ref _backendCalls);

    private long _backendCalls;

    public EventFd QueueDoorbell(int queueIndex) => _kicks[queueIndex];

    public void ReadConfig(uint offset, Span<byte> data)
    {
        data.Clear();
        if (offset < (uint)_config.Length)
        {
            ReadOnlySpan<byte> source = _config.AsSpan((int)offset);
            source[..Math.Min(source.Length, data.Length)].CopyTo(data);
        }
    }

    public void WriteConfig(uint offset, ReadOnlySpan<byte> data)
    {
        // Read-only for the driver.
    }

    public void Activate(VirtioActivation activation)
    {
        ArgumentNullException.ThrowIfNull(activation);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            IReadOnlyList<VhostUserMemoryRegion> regions = _memoryTable();
            _frontend.SetFeatures(activation.NegotiatedFeatures);
            _frontend.SetMemTable(regions);
            Volatile.Write(ref _interrupt, activation.Interrupt);
            foreach (var queue in activation.Queues)
            {
                if (!queue.Enabled || queue.Size == 0 || queue.Index >= _kicks.Length)
                {
                    continue;
                }

                ulong size = queue.Size;
                if (!TryTranslate(regions, queue.DescriptorTable, 16 * size, out ulong descriptors) ||
                    !TryTranslate(regions, queue.AvailableRing, 6 + 2 * size, out ulong available) ||
                    !TryTranslate(regions, queue.UsedRing, 6 + 8 * size, out ulong used))
                {
                    string reason = $"queue {queue.Index}'s rings (descriptors {queue.DescriptorTable}, available {queue.AvailableRing}, used {queue.UsedRing}, size {size}) are not inside guest RAM";
                    VirtioFsLog.NeedsReset(_logger, Tag, reason);
                    activation.Transport.MarkNeedsReset(reason);
                    return;
                }

                _frontend.StartVring((uint)queue.Index, queue.Size, 0, descriptors, available, used, _kicks[queue.Index], _calls[queue.Index]);
                _started.Add(queue.Index);
            }

            VirtioFsLog.Started(_logger, Tag, _started.Count, regions.Count, activation.NegotiatedFeatures);
        }
    }

    public void QueueNotify(int queueIndex)
    {
        // A doorbell the host's ioeventfd did not take: pass it on.
        if ((uint)queueIndex < (uint)_kicks.Length)
        {
            _kicks[queueIndex].Signal();
        }
    }

    public void Reset()
    {
        lock (_lock)
        {
            Volatile.Write(ref _interrupt, null);
            StopRingsLocked();
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            Volatile.Write(ref _interrupt, null);
        }

        foreach (var watch in _callWatches)
        {
            watch.Dispose();
        }

        _frontend.Dispose();
        _backend?.Dispose();
        foreach (var fd in _kicks.Concat(_calls))
        {
            fd.Dispose();
        }
    }

    private void StopRingsLocked()
    {
        foreach (int queue in _started)
        {
            try
            {
                _frontend.StopVring((uint)queue);
            }
            catch (Exception e) when (e is VhostUserException or ObjectDisposedException)
            {
                // A back end that is gone has stopped using the rings anyway.
                VirtioFsLog.StopFailed(_logger, Tag, queue, e);
            }
        }

        _started.Clear();
    }

    private void OnBackendCall(int queue)
    {
        if (_calls[queue].TryConsume(out _))
        {
            Interlocked.Increment(ref _backendCalls);
            Volatile.Read(ref _interrupt)?.NotifyQueue(queue);
        }
    }

    private static bool TryTranslate(IReadOnlyList<VhostUserMemoryRegion> regions, GuestAddress address, ulong length, out ulong hostAddress)
    {
        foreach (var region in regions)
        {
            if (region.TryTranslate(address, length, out hostAddress))
            {
                return true;
            }
        }

        hostAddress = 0;
        return false;
    }
}
