using KvmSharp.Devices.Memory;

namespace KvmSharp.Devices.Virtio.Queues;

/// <summary>
/// A descriptor chain popped from a <see cref="SplitVirtqueue"/>: its head index and its buffers,
/// device-readable ones first, then device-writable ones (indirect tables already flattened).
/// Reusable: a device keeps a few and hands one to each <see cref="SplitVirtqueue.Pop"/>, so serving
/// a request allocates nothing once the segment array has grown to the chains the driver sends.
/// </summary>
public sealed class DescriptorChain
{
    private VirtqueueSegment[] _segments = new VirtqueueSegment[8];

    /// <summary>Index of the head descriptor: what goes back in the used ring.</summary>
    public ushort HeadIndex { get; private set; }

    /// <summary>All buffers in chain order.</summary>
    public ReadOnlySpan<VirtqueueSegment> Segments => _segments.AsSpan(0, Count);

    /// <summary>The device-readable buffers (they come first).</summary>
    public ReadOnlySpan<VirtqueueSegment> Readable => _segments.AsSpan(0, ReadableCount);

    /// <summary>The device-writable buffers.</summary>
    public ReadOnlySpan<VirtqueueSegment> Writable => _segments.AsSpan(ReadableCount, Count - ReadableCount);

    public int Count { get; private set; }

    public int ReadableCount { get; private set; }

    /// <summary>Sum of the readable buffers' lengths (at most 2^32 - 1, checked at pop).</summary>
    public uint ReadableLength { get; private set; }

    /// <summary>Sum of the writable buffers' lengths (at most 2^32 - 1, checked at pop).</summary>
    public uint WritableLength { get; private set; }

    internal void Start(ushort headIndex)
    {
        HeadIndex = headIndex;
        Count = 0;
        ReadableCount = 0;
        ReadableLength = 0;
        WritableLength = 0;
    }

    /// <summary>Append a buffer; false (with the reason) when the lengths overflow or a readable buffer follows a writable one.</summary>
    internal bool TryAppend(in VirtqueueSegment segment, out VirtqueueErrorKind error)
    {
        if (segment.DeviceWritable)
        {
            ulong total = (ulong)WritableLength + segment.Length;
            if (total > uint.MaxValue)
            {
                error = VirtqueueErrorKind.LengthOverflow;
                return false;
            }

            WritableLength = (uint)total;
        }
        else
        {
            if (Count != ReadableCount)
            {
                error = VirtqueueErrorKind.ReadableAfterWritable;
                return false;
            }

            ulong total = (ulong)ReadableLength + segment.Length;
            if (total > uint.MaxValue)
            {
                error = VirtqueueErrorKind.LengthOverflow;
                return false;
            }

            ReadableLength = (uint)total;
            ReadableCount++;
        }

        if (Count == _segments.Length)
        {
            Array.Resize(ref _segments, _segments.Length * 2);
        }

        _segments[Count++] = segment;
        error = default;
        return true;
    }

    /// <summary>
    /// Copy <paramref name="destination"/>.Length bytes of the readable buffers, seen as one byte stream, from
    /// <paramref name="offset"/>. False when the stream is shorter or guest memory refuses the read.
    /// </summary>
    public bool TryReadReadable(IGuestMemory memory, ulong offset, Span<byte> destination)
        => TryCopySegments(memory, Readable, offset, destination, default, write: false);

    /// <summary>
    /// Copy <paramref name="source"/> into the writable buffers, seen as one byte stream, at <paramref name="offset"/>.
    /// False when the stream is shorter or guest memory refuses the write (read-only, outside RAM): nothing past the
    /// failing buffer is written.
    /// </summary>
    public bool TryWriteWritable(IGuestMemory memory, ulong offset, ReadOnlySpan<byte> source)
        => TryCopySegments(memory, Writable, offset, default, source, write: true);

    /// <summary>Copy between guest memory and a span, with <paramref name="segments"/> seen as one byte stream from <paramref name="offset"/>.</summary>
    internal static bool TryCopySegments(IGuestMemory memory, ReadOnlySpan<VirtqueueSegment> segments, ulong offset, Span<byte> destination, ReadOnlySpan<byte> source, bool write)
    {
        int remaining = write ? source.Length : destination.Length;
        int done = 0;
        foreach (var segment in segments)
        {
            if (remaining == 0)
            {
                break;
            }

            if (offset >= segment.Length)
            {
                offset -= segment.Length;
                continue;
            }

            int chunk = (int)Math.Min((ulong)remaining, segment.Length - offset);
            var address = new GuestAddress(segment.Address.Value + offset);
            bool ok = write
                ? memory.TryWrite(address, source.Slice(done, chunk))
                : memory.TryRead(address, destination.Slice(done, chunk));
            if (!ok)
            {
                return false;
            }

            offset = 0;
            done += chunk;
            remaining -= chunk;
        }

        return remaining == 0;
    }
}
