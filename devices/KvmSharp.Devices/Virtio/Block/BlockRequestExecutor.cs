using System.Buffers.Binary;
using System.Runtime.InteropServices;
using KvmSharp.Devices.Memory;
using KvmSharp.Devices.Statistics;
using KvmSharp.Devices.Virtio.Queues;
using Tmds.Linux;

namespace KvmSharp.Devices.Virtio.Block;

/// <summary>
/// Serves one virtio-blk request (a popped chain) against a <see cref="BlockImage"/>: parses the header,
/// checks the sector range, moves the data with preadv/pwritev straight into or out of guest memory
/// when every buffer has a host address (zero-copy), through an aligned bounce buffer otherwise
/// (or when O_DIRECT refuses the guest's alignment), and writes the status byte. One per I/O worker:
/// it owns the worker's scratch (iovecs, bounce buffer), so a request allocates nothing.
/// </summary>
internal sealed unsafe class BlockRequestExecutor : IDisposable
{
    /// <summary>Bounce buffer size: the unit of a copied transfer.</summary>
    public const int BounceBytes = 1 << 20;

    /// <summary>Most ranges one DISCARD / WRITE_ZEROES request may carry (max_discard_seg, max_write_zeroes_seg).</summary>
    public const int MaxRanges = 32;

    /// <summary>Most sectors of one DISCARD / WRITE_ZEROES range (max_discard_sectors, max_write_zeroes_sectors): 2 GiB.</summary>
    public const uint MaxRangeSectors = 1u << 22;

    private readonly BlockImage _image;
    private readonly byte* _bounce;
    private iovec* _vectors;
    private int _vectorCapacity;
    private bool _disposed;

    /// <summary>The errno of the host call that failed the last request with IOERR, or 0 (out of range, read-only, malformed: no host call failed).</summary>
    public int LastErrno { get; private set; }

    private readonly DeviceIoCounters? _io;

    /// <param name="io">Where completed reads and writes are counted (the device's counters); none when null.</param>
    public BlockRequestExecutor(BlockImage image, DeviceIoCounters? io = null)
    {
        _image = image;
        _io = io;
        _bounce = (byte*)NativeMemory.AlignedAlloc(BounceBytes, 4096);
        _vectorCapacity = 64;
        _vectors = (iovec*)NativeMemory.Alloc((nuint)_vectorCapacity, (nuint)sizeof(iovec));
    }

    /// <summary>
    /// Serve <paramref name="chain"/>. Returns null when the request completed (its status byte written; even an
    /// I/O error is a completion), with <paramref name="written"/> the bytes written into the chain. Returns the
    /// reason when the driver's buffers cannot be used at all (no status byte, memory that cannot be written):
    /// the device then needs a reset.
    /// </summary>
    /// <param name="writeThrough">The driver turned the writeback cache off (wce = 0): every write is followed by fdatasync.</param>
    public string? Execute(DescriptorChain chain, IGuestMemory memory, bool writeThrough, out uint written)
    {
        written = 0;
        LastErrno = 0;
        if (chain.WritableLength == 0)
        {
            return $"block request (head {chain.HeadIndex}) has no writable byte for its status";
        }

        ulong statusOffset = chain.WritableLength - 1u;
        var status = Serve(chain, memory, writeThrough, statusOffset, out uint dataWritten, out string? fault);
        if (fault is not null)
        {
            return fault;
        }

        Span<byte> statusByte = [(byte)status];
        if (!chain.TryWriteWritable(memory, statusOffset, statusByte))
        {
            return $"block request (head {chain.HeadIndex}): its status byte cannot be written";
        }

        written = dataWritten + 1;
        return null;
    }

    private VirtioBlockStatus Serve(DescriptorChain chain, IGuestMemory memory, bool writeThrough, ulong dataLength, out uint dataWritten, out string? fault)
    {
        dataWritten = 0;
        fault = null;
        Span<byte> header = stackalloc byte[virtio_blk_outhdr.Size];
        if (!chain.TryReadReadable(memory, 0, header))
        {
            // Shorter than a header (the readable part was checked to be in RAM at pop).
            return VirtioBlockStatus.VIRTIO_BLK_S_IOERR;
        }

        uint type = BinaryPrimitives.ReadUInt32LittleEndian(header);
        ulong sector = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
        ulong payloadLength = chain.ReadableLength - (ulong)virtio_blk_outhdr.Size;
        switch ((VirtioBlockRequestType)type)
        {
            case VirtioBlockRequestType.VIRTIO_BLK_T_IN:
            {
                if (!IsInRange(sector, dataLength, out long offset))
                {
                    return VirtioBlockStatus.VIRTIO_BLK_S_IOERR;
                }

                var result = Transfer(chain.Writable, 0, dataLength, offset, toGuest: true, memory, out fault);
                if (result == 0 && fault is null)
                {
                    dataWritten = (uint)dataLength;
                    _io?.CountRead(dataLength);
                }

                return Status(result);
            }

            case VirtioBlockRequestType.VIRTIO_BLK_T_OUT:
            {
                if (_image.ReadOnly || !IsInRange(sector, payloadLength, out long offset))
                {
                    return VirtioBlockStatus.VIRTIO_BLK_S_IOERR;
                }

                int result = Transfer(chain.Readable, virtio_blk_outhdr.Size, payloadLength, offset, toGuest: false, memory, out fault);
                if (result == 0 && writeThrough)
                {
                    result = _image.Flush();
                }

                if (result == 0 && fault is null)
                {
                    _io?.CountWrite(payloadLength);
                }

                return Status(result);
            }

            case VirtioBlockRequestType.VIRTIO_BLK_T_FLUSH:
                return _image.ReadOnly ? VirtioBlockStatus.VIRTIO_BLK_S_OK : Status(_image.Flush());

            case VirtioBlockRequestType.VIRTIO_BLK_T_GET_ID:
            {
                Span<byte> id = stackalloc byte[VirtioBlockFeatures.VIRTIO_BLK_ID_BYTES];
                id.Clear();
                _image.SerialBytes.CopyTo(id);
                int length = (int)Math.Min(dataLength, (ulong)id.Length);
                if (!chain.TryWriteWritable(memory, 0, id[..length]))
                {
                    fault = $"block request (head {chain.HeadIndex}): GET_ID buffer cannot be written";
                    return VirtioBlockStatus.VIRTIO_BLK_S_IOERR;
                }

                dataWritten = (uint)length;
                return VirtioBlockStatus.VIRTIO_BLK_S_OK;
            }

            case VirtioBlockRequestType.VIRTIO_BLK_T_DISCARD:
            case VirtioBlockRequestType.VIRTIO_BLK_T_WRITE_ZEROES:
                return Ranges(chain, memory, (VirtioBlockRequestType)type == VirtioBlockRequestType.VIRTIO_BLK_T_DISCARD, payloadLength);

            default:
                return VirtioBlockStatus.VIRTIO_BLK_S_UNSUPP;
        }
    }

    private VirtioBlockStatus Ranges(DescriptorChain chain, IGuestMemory memory, bool discard, ulong payloadLength)
    {
        if (discard ? !_image.CanDiscard : _image.ReadOnly)
        {
            return VirtioBlockStatus.VIRTIO_BLK_S_UNSUPP;
        }

        if (payloadLength == 0 || payloadLength % virtio_blk_discard_write_zeroes.Size != 0 || payloadLength / virtio_blk_discard_write_zeroes.Size > MaxRanges)
        {
            return VirtioBlockStatus.VIRTIO_BLK_S_IOERR;
        }

        Span<byte> range = stackalloc byte[virtio_blk_discard_write_zeroes.Size];
        for (ulong at = virtio_blk_outhdr.Size; at < virtio_blk_outhdr.Size + payloadLength; at += (ulong)range.Length)
        {
            if (!chain.TryReadReadable(memory, at, range))
            {
                return VirtioBlockStatus.VIRTIO_BLK_S_IOERR;
            }

            ulong sector = BinaryPrimitives.ReadUInt64LittleEndian(range);
            uint sectors = BinaryPrimitives.ReadUInt32LittleEndian(range[8..]);
            uint flags = BinaryPrimitives.ReadUInt32LittleEndian(range[12..]);
            bool unmap = (flags & virtio_blk_discard_write_zeroes.VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) != 0;
            // Unknown flags, and UNMAP on a discard, are not supported (virtio 1.2, 5.2.6.2).
            if ((flags & ~virtio_blk_discard_write_zeroes.VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) != 0 || (discard && unmap))
            {
                return VirtioBlockStatus.VIRTIO_BLK_S_UNSUPP;
            }

            if (sectors > MaxRangeSectors || !IsInRange(sector, (ulong)sectors * BlockImage.SectorSize, out long offset))
            {
                return VirtioBlockStatus.VIRTIO_BLK_S_IOERR;
            }

            long length = (long)sectors * BlockImage.SectorSize;
            if (length == 0)
            {
                continue;
            }

            int result = discard ? _image.Discard(offset, length) : _image.WriteZeroes(offset, length, unmap);
            if (result != 0)
            {
                return Status(result);
            }
        }

        return VirtioBlockStatus.VIRTIO_BLK_S_OK;
    }

    private VirtioBlockStatus Status(int errno)
    {
        LastErrno = errno;
        return errno == 0 ? VirtioBlockStatus.VIRTIO_BLK_S_OK : VirtioBlockStatus.VIRTIO_BLK_S_IOERR;
    }

    private bool IsInRange(ulong sector, ulong byteLength, out long offset)
    {
        offset = 0;
        ulong capacity = _image.CapacitySectors;
        if (byteLength % BlockImage.SectorSize != 0 || sector > capacity || byteLength / BlockImage.SectorSize > capacity - sector)
        {
            return false;
        }

        offset = (long)(sector * BlockImage.SectorSize);
        return true;
    }

    // Moves `length` bytes between the file at `fileOffset` and the buffers `segments` from byte `skip` of their stream.
    // Returns 0 or the errno of the file operation; `fault` is set when guest memory refused a copy.
    private int Transfer(ReadOnlySpan<VirtqueueSegment> segments, ulong skip, ulong length, long fileOffset, bool toGuest, IGuestMemory memory, out string? fault)
    {
        fault = null;
        if (length == 0)
        {
            return 0;
        }

        if (TryBuildVectors(segments, skip, length, toGuest, memory, out int count))
        {
            int result = toGuest ? _image.ReadVectors(_vectors, count, fileOffset) : _image.WriteVectors(_vectors, count, fileOffset);
            if (!(result == LibC.EINVAL && _image.Spec.DirectIo))
            {
                if (toGuest && result == 0)
                {
                    CommitVectors(segments, skip, length, memory);
                }

                return result;
            }

            // O_DIRECT refused the guest buffers' alignment: go through the aligned bounce buffer.
        }

        for (ulong done = 0; done < length;)
        {
            int chunk = (int)Math.Min(length - done, BounceBytes);
            var span = new Span<byte>(_bounce, chunk);
            var vector = new iovec { iov_base = _bounce, iov_len = (size_t)(ulong)chunk };
            if (toGuest)
            {
                int result = _image.ReadVectors(&vector, 1, fileOffset + (long)done);
                if (result != 0)
                {
                    return result;
                }

                if (!DescriptorChain.TryCopySegments(memory, segments, skip + done, default, span, write: true))
                {
                    fault = "block read: a buffer of the chain cannot be written";
                    return 0;
                }
            }
            else
            {
                if (!DescriptorChain.TryCopySegments(memory, segments, skip + done, span, default, write: false))
                {
                    fault = "block write: a buffer of the chain cannot be read";
                    return 0;
                }

                int result = _image.WriteVectors(&vector, 1, fileOffset + (long)done);
                if (result != 0)
                {
                    return result;
                }
            }

            done += (ulong)chunk;
        }

        return 0;
    }

    private bool TryBuildVectors(ReadOnlySpan<VirtqueueSegment> segments, ulong skip, ulong length, bool toGuest, IGuestMemory memory, out int count)
    {
        count = 0;
        foreach (var segment in segments)
        {
            if (length == 0)
            {
                break;
            }

            if (skip >= segment.Length)
            {
                skip -= segment.Length;
                continue;
            }

            ulong piece = Math.Min(length, segment.Length - skip);
            var address = new GuestAddress(segment.Address.Value + skip);
            if (!memory.TryGetHostAddress(address, piece, forWrite: toGuest, out nint host))
            {
                return false;
            }

            if (count == _vectorCapacity)
            {
                Grow();
            }

            _vectors[count] = new iovec { iov_base = (void*)host, iov_len = (size_t)piece };
            count++;
            skip = 0;
            length -= piece;
        }

        return length == 0;
    }

    // The vectors were advanced by the transfer; the guest ranges are recomputed from the segments.
    private static void CommitVectors(ReadOnlySpan<VirtqueueSegment> segments, ulong skip, ulong length, IGuestMemory memory)
    {
        foreach (var segment in segments)
        {
            if (length == 0)
            {
                break;
            }

            if (skip >= segment.Length)
            {
                skip -= segment.Length;
                continue;
            }

            ulong piece = Math.Min(length, segment.Length - skip);
            memory.CommitWrite(new GuestAddress(segment.Address.Value + skip), piece);
            skip = 0;
            length -= piece;
        }
    }

    private void Grow()
    {
        int capacity = _vectorCapacity * 2;
        _vectors = (iovec*)NativeMemory.Realloc(_vectors, (nuint)capacity * (nuint)sizeof(iovec));
        _vectorCapacity = capacity;
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        NativeMemory.AlignedFree(_bounce);
        NativeMemory.Free(_vectors);
    }
}
