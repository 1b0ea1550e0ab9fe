using KvmSharp.Devices.Memory;
using KvmSharp.Devices.Statistics;
using KvmSharp.Devices.Virtio.Queues;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace KvmSharp.Devices.Virtio.Rng;

/// <summary>
/// virtio-rng (entropy device, one request queue, no configuration space): fills the writable buffers
/// the driver posts with bytes from the host's getrandom, on the event loop (getrandom does not block
/// once the host is seeded). Straight into guest memory where it has a host address, through a small
/// buffer otherwise. At most <see cref="MaxBytesPerRequest"/> bytes per request, so one request cannot
/// hold the event loop long.
/// </summary>
/// <example><code>var rng = new VirtioRng(loggerFactory.CreateLogger&lt;VirtioRng&gt;());  // hand it to the virtio-pci transport</code></example>
public sealed unsafe class VirtioRng : IVirtioDevice, IDeviceIoStatistics
{
    public const ushort DefaultQueueSize = 256;

    /// <summary>The most bytes one request gets (the driver asks again for more).</summary>
    public const int MaxBytesPerRequest = 64 * 1024;

    private const int BounceBytes = 4096;

    private readonly ILogger _logger;
    private readonly object _gate = new();
    private readonly DescriptorChain _chain = new();
    private readonly byte[] _bounce = new byte[BounceBytes];
    private SplitVirtqueue? _queue;
    private VirtioActivation? _activation;
    private bool _needsResetReported;

    public VirtioRng(ILogger<VirtioRng>? logger = null, ushort queueSize = DefaultQueueSize)
    {
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        QueueMaxSizes = [queueSize];
    }

    public VirtioDeviceType DeviceType => VirtioDeviceType.Entropy;

    public ulong AvailableFeatures => VirtioFeatureBits.VIRTIO_RING_F_EVENT_IDX | VirtioFeatureBits.VIRTIO_RING_F_INDIRECT_DESC;

    public IReadOnlyList<ushort> QueueMaxSizes { get; }

    /// <summary>Random bytes handed to the guest so far.</summary>
    public long BytesServed { get; private set; }

    /// <summary>Entropy buffers filled (reads) and their bytes.</summary>
    public DeviceIoCounters Io { get; } = new();

    public void ReadConfig(uint offset, Span<byte> data) => data.Clear();

    public void WriteConfig(uint offset, ReadOnlySpan<byte> data)
    {
    }

    public void Activate(VirtioActivation activation)
    {
        ArgumentNullException.ThrowIfNull(activation);
        string? reset = null;
        lock (_gate)
        {
            _activation = activation;
            _needsResetReported = false;
            _queue = SplitVirtqueue.FromActivation(activation, 0, "virtio-rng's request queue", out reset);
        }

        if (reset is not null)
        {
            ReportNeedsReset(reset);
        }
    }

    public void QueueNotify(int queueIndex)
    {
        string? reset = null;
        bool notify = false;
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
                var result = queue.Pop(_chain);
                if (result == VirtqueuePopResult.Empty)
                {
                    break;
                }

                if (result == VirtqueuePopResult.Broken)
                {
                    reset = queue.Failure!.ToString();
                    break;
                }

                if (!TryFill(_chain, activation.Memory, out uint written))
                {
                    reset = queue.MarkBroken(VirtqueueErrorKind.OutsideGuestMemory, $"entropy buffer of chain {_chain.HeadIndex} cannot be written").ToString();
                    break;
                }

                BytesServed += written;
                Io.CountRead(written);
                if (!queue.TryPushUsed(_chain.HeadIndex, written))
                {
                    reset = queue.Failure!.ToString();
                    break;
                }
            }

            if (reset is null)
            {
                notify = queue.ShouldNotify();
                reset = queue.Failure?.ToString();
            }
        }

        if (reset is not null)
        {
            ReportNeedsReset(reset);
        }
        else if (notify)
        {
            activation.Interrupt.NotifyQueue(0);
        }
    }

    public void Reset()
    {
        lock (_gate)
        {
            _queue = null;
            _activation = null;
        }
    }

    public void Dispose() => Reset();

    private bool TryFill(DescriptorChain chain, IGuestMemory memory, out uint written)
    {
        written = 0;
        uint budget = MaxBytesPerRequest;
        foreach (var segment in chain.Writable)
        {
            uint length = Math.Min(segment.Length, budget);
            if (length == 0)
            {
                break;
            }

            if (memory.TryGetHostAddress(segment.Address, length, forWrite: true, out nint host))
            {
                if (!GetRandom.TryFill((byte*)host, length))
                {
                    VirtioRngLog.GetRandomFailed(_logger);
                    return true;
                }

                memory.CommitWrite(segment.Address, length);
            }
            else
            {
                for (uint done = 0; done < length;)
                {
                    int chunk = (int)Math.Min(length - done, BounceBytes);
                    fixed (byte* bounce = _bounce)
                    {
                        if (!GetRandom.TryFill(bounce, (nuint)chunk))
                        {
                            VirtioRngLog.GetRandomFailed(_logger);
                            return true;
                        }
                    }

                    if (!memory.TryWrite(new GuestAddress(segment.Address.Value + done), _bounce.AsSpan(0, chunk)))
                    {
                        return false;
                    }

                    done += (uint)chunk;
                    written += (uint)chunk;
                }

                budget -= length;
                continue;
            }

            written += length;
            budget -= length;
        }

        return true;
    }

    private void ReportNeedsReset(string reason)
    {
        VirtioActivation? activation;
        lock (_gate)
        {
            activation = _activation;
            if (_needsResetReported || activation is null)
            {
                return;
            }

            _needsResetReported = true;
        }

        VirtioRngLog.NeedsReset(_logger, reason);
        activation.Transport.MarkNeedsReset(reason);
    }
}
