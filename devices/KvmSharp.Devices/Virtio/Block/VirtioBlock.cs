using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using KvmSharp.Devices.Memory;
using KvmSharp.Devices.Statistics;
using KvmSharp.Devices.Virtio.Queues;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace KvmSharp.Devices.Virtio.Block;

/// <summary>
/// A virtio-blk device over a <see cref="BlockImage"/> (one request queue). The event loop pops
/// requests (<see cref="QueueNotify"/>) and hands them to a small pool of dedicated I/O threads,
/// which do preadv/pwritev straight into guest memory, so several requests are in flight and no
/// blocking I/O runs on the event loop or a vCPU. Completions go into the used ring under the
/// device's lock, and the interrupt is raised when the queue says the driver wants it.
/// </summary>
/// <example>
/// <code>
/// var spec = DriveSpec.Parse("file=root.img,serial=root");   // DriveSpecException: exit 2
/// var image = BlockImage.Open(spec);                         // BlockImageException: exit 2
/// var device = new VirtioBlock(image, loggerFactory.CreateLogger&lt;VirtioBlock&gt;());
/// // hand `device` to the virtio-pci transport; disposing the device closes the image.
/// </code>
/// </example>
/// <remarks>
/// Offers SEG_MAX, BLK_SIZE, FLUSH, CONFIG_WCE, RO (readonly=on), DISCARD (where the file can punch
/// holes), WRITE_ZEROES (read-write images), EVENT_IDX and INDIRECT_DESC. A driver that breaks the
/// ring's rules, or names buffers that cannot be written, gets DEVICE_NEEDS_RESET through
/// <see cref="IVirtioTransportStatus.MarkNeedsReset"/>; the queue then serves nothing until reset.
/// </remarks>
public sealed class VirtioBlock : IVirtioDevice, IDeviceIoStatistics
{
    public const ushort DefaultQueueSize = 256;
    public const int DefaultWorkerCount = 4;

    /// <summary>Size of <see cref="virtio_blk_config"/> as KvmSharp exposes it.</summary>
    public static readonly int ConfigSize = Unsafe.SizeOf<virtio_blk_config>();

    private readonly BlockImage _image;
    private readonly ILogger _logger;
    private readonly int _workerCount;
    private readonly ushort _queueSize;
    private readonly object _gate = new();
    private readonly Queue<BlockRequest> _pending = new();
    private readonly Stack<BlockRequest> _pool = new();
    private readonly List<Thread> _workers = [];
    private SplitVirtqueue? _queue;
    private VirtioActivation? _activation;
    private int _inFlight;
    private bool _needsResetReported;
    private bool _writeThrough;
    private bool _disposed;
    private long _hostFailures;

    /// <summary>A virtio-blk device serving <paramref name="image"/>, which it owns from now on (disposed with the device).</summary>
    /// <param name="workerCount">I/O threads, i.e. the most requests in flight at once.</param>
    /// <param name="queueSize">The request queue's maximum size (a power of two).</param>
    public VirtioBlock(BlockImage image, ILogger<VirtioBlock>? logger = null, int workerCount = DefaultWorkerCount, ushort queueSize = DefaultQueueSize)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentOutOfRangeException.ThrowIfLessThan(workerCount, 1);
        if (queueSize < 4 || queueSize > SplitVirtqueue.MaxSize || (queueSize & (queueSize - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(queueSize), queueSize, "a power of two from 4 to 32768");
        }

        _image = image;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _workerCount = workerCount;
        _queueSize = queueSize;
        QueueMaxSizes = [queueSize];
        AvailableFeatures = ComputeFeatures(image);
    }

    public VirtioDeviceType DeviceType => VirtioDeviceType.Block;

    public ulong AvailableFeatures { get; }

    public IReadOnlyList<ushort> QueueMaxSizes { get; }

    public BlockImage Image => _image;

    /// <summary>Requests that failed with IOERR because a host call failed (errno), since the device was made.</summary>
    public long HostFailures => Interlocked.Read(ref _hostFailures);

    /// <summary>Reads and writes served (data requests that completed with VIRTIO_BLK_S_OK), and their bytes.</summary>
    public DeviceIoCounters Io { get; } = new();

    /// <summary>Requests popped and not yet completed.</summary>
    public int InFlight
    {
        get
        {
            lock (_gate)
            {
                return _inFlight;
            }
        }
    }

    private static ulong ComputeFeatures(BlockImage image)
    {
        ulong features = Bit(VirtioBlockFeatures.VIRTIO_BLK_F_SEG_MAX) | Bit(VirtioBlockFeatures.VIRTIO_BLK_F_BLK_SIZE)
            | Bit(VirtioBlockFeatures.VIRTIO_BLK_F_FLUSH) | Bit(VirtioBlockFeatures.VIRTIO_BLK_F_CONFIG_WCE)
            | VirtioFeatureBits.VIRTIO_RING_F_EVENT_IDX | VirtioFeatureBits.VIRTIO_RING_F_INDIRECT_DESC;
        if (image.ReadOnly)
        {
            features |= Bit(VirtioBlockFeatures.VIRTIO_BLK_F_RO);
        }
        else
        {
            features |= Bit(VirtioBlockFeatures.VIRTIO_BLK_F_WRITE_ZEROES);
        }

        if (image.CanDiscard)
        {
            features |= Bit(VirtioBlockFeatures.VIRTIO_BLK_F_DISCARD);
        }

        return features;

        static ulong Bit(int bit) => 1UL << bit;
    }

    public void ReadConfig(uint offset, Span<byte> data)
    {
        // x86 is little-endian, as virtio 1.x is: the struct's bytes are the config space.
        var config = new virtio_blk_config
        {
            capacity = _image.CapacitySectors,
            seg_max = (uint)(_queueSize - 2),
            blk_size = BlockImage.SectorSize,
            wce = (byte)(Volatile.Read(ref _writeThrough) ? 0 : 1),
            num_queues = 1,
        };
        if (_image.CanDiscard)
        {
            config.max_discard_sectors = BlockRequestExecutor.MaxRangeSectors;
            config.max_discard_seg = BlockRequestExecutor.MaxRanges;
            // 4 KiB: the block size of common host filesystems, so a discard frees whole blocks.
            config.discard_sector_alignment = 8;
        }

        if (!_image.ReadOnly)
        {
            config.max_write_zeroes_sectors = BlockRequestExecutor.MaxRangeSectors;
            config.max_write_zeroes_seg = BlockRequestExecutor.MaxRanges;
            config.write_zeroes_may_unmap = (byte)(_image.CanPunchHoles ? 1 : 0);
        }

        var bytes = MemoryMarshal.AsBytes(MemoryMarshal.CreateReadOnlySpan(ref config, 1));
        data.Clear();
        if (offset < (uint)bytes.Length)
        {
            var source = bytes[(int)offset..];
            source[..Math.Min(source.Length, data.Length)].CopyTo(data);
        }
    }

    /// <summary>Only <c>wce</c> is writable (VIRTIO_BLK_F_CONFIG_WCE): 0 makes every write durable before it completes.</summary>
    public void WriteConfig(uint offset, ReadOnlySpan<byte> data)
    {
        if (offset <= virtio_blk_config.WceOffset && virtio_blk_config.WceOffset < offset + (uint)data.Length)
        {
            Volatile.Write(ref _writeThrough, data[(int)(virtio_blk_config.WceOffset - offset)] == 0);
        }
    }

    public void Activate(VirtioActivation activation)
    {
        ArgumentNullException.ThrowIfNull(activation);
        string? reset = null;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _activation = activation;
            _needsResetReported = false;
            _queue = SplitVirtqueue.FromActivation(activation, 0, "virtio-blk's request queue", out reset);

            StartWorkers();
        }

        if (reset is not null)
        {
            ReportNeedsReset(activation, reset);
            return;
        }

        VirtioBlockLog.Activated(_logger, _image.Spec.DisplayName, _image.CapacitySectors, activation.NegotiatedFeatures, _workerCount);
    }

    /// <summary>Pops every available request and queues it for the I/O workers. Runs on the event loop; does no I/O itself.</summary>
    public void QueueNotify(int queueIndex)
    {
        string? reset = null;
        VirtioActivation? activation;
        lock (_gate)
        {
            activation = _activation;
            var queue = _queue;
            if (queueIndex != 0 || queue is null || activation is null)
            {
                return;
            }

            while (true)
            {
                var request = _pool.Count > 0 ? _pool.Pop() : new BlockRequest();
                var result = queue.Pop(request.Chain);
                if (result != VirtqueuePopResult.Chain)
                {
                    _pool.Push(request);
                    if (result == VirtqueuePopResult.Broken)
                    {
                        reset = queue.Failure!.ToString();
                    }

                    break;
                }

                request.Queue = queue;
                request.Memory = activation.Memory;
                _pending.Enqueue(request);
                _inFlight++;
            }

            if (_pending.Count > 0)
            {
                Monitor.PulseAll(_gate);
            }
        }

        if (reset is not null)
        {
            ReportNeedsReset(activation!, reset);
        }
    }

    /// <summary>Abandons queued requests, waits for those being served, forgets the queue. Afterwards nothing touches guest memory.</summary>
    public void Reset()
    {
        lock (_gate)
        {
            int abandoned = _pending.Count;
            while (_pending.TryDequeue(out var request))
            {
                Recycle(request);
            }

            _queue = null;
            _activation = null;
            int waitedFor = _inFlight;
            while (_inFlight > 0)
            {
                Monitor.Wait(_gate);
            }

            _writeThrough = false;
            VirtioBlockLog.Reset(_logger, _image.Spec.DisplayName, abandoned, waitedFor);
        }
    }

    public void Dispose()
    {
        Reset();
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            Monitor.PulseAll(_gate);
        }

        foreach (var worker in _workers)
        {
            worker.Join();
        }

        _image.Dispose();
    }

    // Under _gate.
    private void StartWorkers()
    {
        while (_workers.Count < _workerCount)
        {
            var worker = new Thread(WorkerLoop) { IsBackground = true, Name = $"virtio-blk-{_workers.Count}" };
            _workers.Add(worker);
            worker.Start();
        }
    }

    private void WorkerLoop()
    {
        using var executor = new BlockRequestExecutor(_image, Io);
        while (true)
        {
            BlockRequest request;
            bool writeThrough;
            lock (_gate)
            {
                while (_pending.Count == 0 && !_disposed)
                {
                    Monitor.Wait(_gate);
                }

                if (!_pending.TryDequeue(out request!))
                {
                    return;
                }

                writeThrough = _writeThrough;
            }

            string? fault = executor.Execute(request.Chain, request.Memory!, writeThrough, out uint written);
            if (executor.LastErrno != 0)
            {
                ReportHostFailure(executor.LastErrno);
            }

            Complete(request, fault, written);
        }
    }

    private void Complete(BlockRequest request, string? fault, uint written)
    {
        string? reset = null;
        bool notify = false;
        VirtioActivation? activation;
        lock (_gate)
        {
            activation = _activation;
            var queue = request.Queue!;
            if (queue == _queue)
            {
                if (fault is not null)
                {
                    reset = queue.MarkBroken(VirtqueueErrorKind.OutsideGuestMemory, fault).ToString();
                }
                else if (!queue.TryPushUsed(request.Chain.HeadIndex, written))
                {
                    reset = queue.Failure!.ToString();
                }
                else
                {
                    notify = queue.ShouldNotify();
                    reset = queue.Failure?.ToString();
                }
            }

            Recycle(request);
        }

        if (reset is not null && activation is not null)
        {
            ReportNeedsReset(activation, reset);
        }
        else if (notify)
        {
            activation?.Interrupt.NotifyQueue(0);
        }
    }

    // Under _gate.
    private void Recycle(BlockRequest request)
    {
        request.Queue = null;
        request.Memory = null;
        _pool.Push(request);
        if (--_inFlight == 0)
        {
            Monitor.PulseAll(_gate);
        }
    }

    // The first ten host failures are logged, then every thousandth: a failing disk must not flood the log.
    private void ReportHostFailure(int errno)
    {
        long count = Interlocked.Increment(ref _hostFailures);
        if (count <= 10 || count % 1000 == 0)
        {
            VirtioBlockLog.HostIoFailed(_logger, _image.Spec.DisplayName, Marshal.GetPInvokeErrorMessage(errno), errno, count);
        }
    }

    private void ReportNeedsReset(VirtioActivation activation, string reason)
    {
        lock (_gate)
        {
            if (_needsResetReported || _activation != activation)
            {
                return;
            }

            _needsResetReported = true;
        }

        VirtioBlockLog.NeedsReset(_logger, _image.Spec.DisplayName, reason);
        activation.Transport.MarkNeedsReset(reason);
    }
}
