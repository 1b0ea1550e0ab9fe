using System.Buffers.Binary;
using KvmSharp.Devices.Memory;

namespace KvmSharp.Devices.Virtio.Queues;

/// <summary>
/// The device side of one split virtqueue (virtio 1.x, 2.7) over <see cref="IGuestMemory"/>. It pops
/// available descriptor chains, validating everything the driver wrote (indices, loops, lengths,
/// addresses, indirect tables), pushes used elements, and decides whether the driver wants an
/// interrupt (EVENT_IDX or VRING_AVAIL_F_NO_INTERRUPT). A driver that breaks a rule gets a typed
/// <see cref="VirtqueueError"/> in <see cref="Failure"/>, never an exception, and the queue serves
/// nothing more: the device then marks itself DEVICE_NEEDS_RESET.
/// </summary>
/// <remarks>
/// Threading: <see cref="Pop"/> is called by one thread at a time (the event loop); <see cref="TryPushUsed"/>
/// and <see cref="ShouldNotify"/> by one thread at a time (the device serializes its completions, e.g.
/// under a lock). The two sides touch disjoint state and disjoint guest bytes.
/// Memory ordering: the available index is read before the ring entries and descriptors it
/// publishes (acquire), a used element is written before the used index that publishes it
/// (release), and the used index is stored before the driver's event index is read (full fence),
/// so neither side misses the other's update.
/// </remarks>
public sealed class SplitVirtqueue
{
    /// <summary>The largest queue size the split ring allows.</summary>
    public const int MaxSize = 32768;

    private readonly IGuestMemory _memory;
    private readonly bool _eventIdx;
    private readonly bool _indirect;
    private readonly GuestAddress _descriptors;
    private readonly GuestAddress _avail;
    private readonly GuestAddress _used;
    // Loop detection without clearing: a descriptor is visited in the current walk when its stamp is the walk's.
    private readonly uint[] _visited;
    private readonly uint[] _visitedIndirect;
    private uint _walk;
    private ushort _nextAvail;
    private ushort _nextUsed;
    private ushort _lastNotifyUsed;
    private int _availEventWritten = -1;
    private VirtqueueError? _failure;

    private SplitVirtqueue(VirtqueueConfig config, IGuestMemory memory, bool eventIdx, bool indirect)
    {
        Index = config.Index;
        Size = config.Size;
        _memory = memory;
        _eventIdx = eventIdx;
        _indirect = indirect;
        _descriptors = config.DescriptorTable;
        _avail = config.AvailableRing;
        _used = config.UsedRing;
        _visited = new uint[Size];
        _visitedIndirect = new uint[Size];
    }

    public int Index { get; }

    public ushort Size { get; }

    /// <summary>Why the queue stopped, or null while it works. Set once; the first broken rule wins.</summary>
    public VirtqueueError? Failure => Volatile.Read(ref _failure);

    /// <summary>The next available-ring slot the device will read (free-running).</summary>
    public ushort NextAvailIndex => _nextAvail;

    /// <summary>The next used-ring slot the device will write (free-running).</summary>
    public ushort NextUsedIndex => _nextUsed;

    /// <summary>
    /// Queue <paramref name="index"/> of an activation as a split virtqueue, or null with the reason the
    /// device needs a reset (the queue is missing or not enabled, or its rings are unusable).
    /// </summary>
    public static SplitVirtqueue? FromActivation(VirtioActivation activation, int index, string queueName, out string? needsResetReason)
    {
        var config = activation.Queues.Count > index ? activation.Queues[index] : default;
        if (!config.Enabled)
        {
            needsResetReason = $"{queueName} is not enabled at activation";
            return null;
        }
        if (!TryCreate(config, activation.Memory, activation.NegotiatedFeatures, out var queue, out var error))
        {
            needsResetReason = error!.ToString();
            return null;
        }
        needsResetReason = null;
        return queue;
    }

    /// <summary>
    /// A queue over the rings <paramref name="config"/> names. Checks the size (a power of two up to
    /// <see cref="MaxSize"/>), the alignments the spec requires (16, 2, 4), that the rings lie in guest
    /// RAM, and that the used ring is writable (it clears the used flags). False with the error otherwise.
    /// </summary>
    /// <param name="negotiatedFeatures">The transport's negotiated features: EVENT_IDX and INDIRECT_DESC are honoured only when negotiated.</param>
    public static bool TryCreate(VirtqueueConfig config, IGuestMemory memory, ulong negotiatedFeatures, out SplitVirtqueue? queue, out VirtqueueError? error)
    {
        ArgumentNullException.ThrowIfNull(memory);
        queue = null;
        ushort size = config.Size;
        if (size == 0 || size > MaxSize || (size & (size - 1)) != 0)
        {
            error = new VirtqueueError(config.Index, VirtqueueErrorKind.BadRingLayout, $"queue size {size} is not a power of two in [1, {MaxSize}]");
            return false;
        }

        if (config.DescriptorTable.Value % 16 != 0 || config.AvailableRing.Value % 2 != 0 || config.UsedRing.Value % 4 != 0)
        {
            error = new VirtqueueError(config.Index, VirtqueueErrorKind.BadRingLayout,
                $"misaligned rings: descriptors {config.DescriptorTable} (needs 16), avail {config.AvailableRing} (needs 2), used {config.UsedRing} (needs 4)");
            return false;
        }

        bool eventIdx = (negotiatedFeatures & VirtioFeatureBits.VIRTIO_RING_F_EVENT_IDX) != 0;
        bool indirect = (negotiatedFeatures & VirtioFeatureBits.VIRTIO_RING_F_INDIRECT_DESC) != 0;
        ulong descriptorBytes = (ulong)size * vring_desc.Size;
        ulong availBytes = vring_avail.RingOffset + 2UL * size + 2;
        ulong usedBytes = vring_used.RingOffset + (ulong)vring_used_elem.Size * size + 2;
        if (!IsInMemory(memory, config.DescriptorTable, descriptorBytes)
            || !IsInMemory(memory, config.AvailableRing, availBytes)
            || !IsInMemory(memory, config.UsedRing, usedBytes))
        {
            error = new VirtqueueError(config.Index, VirtqueueErrorKind.BadRingLayout,
                $"rings outside guest RAM: descriptors {config.DescriptorTable}+{descriptorBytes}, avail {config.AvailableRing}+{availBytes}, used {config.UsedRing}+{usedBytes}");
            return false;
        }

        // The used ring belongs to the device; clearing its flags also proves it is writable.
        if (!memory.TryWrite(config.UsedRing, stackalloc byte[2]))
        {
            error = new VirtqueueError(config.Index, VirtqueueErrorKind.UsedRingNotWritable, $"used ring at {config.UsedRing} is not writable guest RAM");
            return false;
        }

        queue = new SplitVirtqueue(config, memory, eventIdx, indirect);
        error = null;
        return true;
    }

    /// <summary>
    /// Fill <paramref name="chain"/> with the next available chain. With EVENT_IDX, an empty queue first
    /// publishes avail_event (so the driver kicks for the next chain) and looks again.
    /// </summary>
    public VirtqueuePopResult Pop(DescriptorChain chain)
    {
        if (Failure is not null)
        {
            return VirtqueuePopResult.Broken;
        }

        while (true)
        {
            if (!TryReadU16(new GuestAddress(_avail.Value + 2), out ushort availIdx))
            {
                return Fail(VirtqueueErrorKind.OutsideGuestMemory, $"avail idx at {_avail}+2 unreadable");
            }

            ushort pending = (ushort)(availIdx - _nextAvail);
            if (pending > Size)
            {
                return Fail(VirtqueueErrorKind.AvailIndexTooFar, $"avail idx {availIdx} is {pending} ahead of the device's {_nextAvail}, queue size {Size}");
            }

            if (pending > 0)
            {
                break;
            }

            if (!_eventIdx || _availEventWritten == _nextAvail)
            {
                return VirtqueuePopResult.Empty;
            }

            // Ask for a kick at the next chain, then look again: the driver may have added one before seeing it.
            if (!TryWriteU16(AvailEventAddress, _nextAvail))
            {
                return Fail(VirtqueueErrorKind.UsedRingNotWritable, $"avail_event at {AvailEventAddress} is not writable");
            }

            _availEventWritten = _nextAvail;
            Interlocked.MemoryBarrier();
        }

        // Acquire: the ring entry and descriptors are read after the index that published them.
        Interlocked.MemoryBarrier();
        var slot = new GuestAddress(_avail.Value + vring_avail.RingOffset + 2UL * (ushort)(_nextAvail & (Size - 1)));
        if (!TryReadU16(slot, out ushort head))
        {
            return Fail(VirtqueueErrorKind.OutsideGuestMemory, $"avail ring entry at {slot} unreadable");
        }

        var result = Walk(chain, head);
        if (result == VirtqueuePopResult.Chain)
        {
            _nextAvail++;
        }

        return result;
    }

    /// <summary>
    /// Return chain <paramref name="headIndex"/> to the driver with <paramref name="writtenLength"/> bytes written:
    /// the element first, then (release) the used index. False when the used ring cannot be written (the queue is then broken).
    /// </summary>
    public bool TryPushUsed(ushort headIndex, uint writtenLength)
    {
        if (Failure is not null)
        {
            return false;
        }

        Span<byte> element = stackalloc byte[vring_used_elem.Size];
        BinaryPrimitives.WriteUInt32LittleEndian(element, headIndex);
        BinaryPrimitives.WriteUInt32LittleEndian(element[4..], writtenLength);
        var slot = new GuestAddress(_used.Value + vring_used.RingOffset + (ulong)vring_used_elem.Size * (ushort)(_nextUsed & (Size - 1)));
        if (!_memory.TryWrite(slot, element))
        {
            Fail(VirtqueueErrorKind.UsedRingNotWritable, $"used element at {slot} is not writable");
            return false;
        }

        // Release: the driver must see the element before the index that publishes it.
        Interlocked.MemoryBarrier();
        ushort next = (ushort)(_nextUsed + 1);
        if (!TryWriteU16(new GuestAddress(_used.Value + 2), next))
        {
            Fail(VirtqueueErrorKind.UsedRingNotWritable, $"used idx at {_used}+2 is not writable");
            return false;
        }

        _nextUsed = next;
        return true;
    }

    /// <summary>
    /// Whether the driver wants an interrupt for the used elements pushed since the last call: with
    /// EVENT_IDX, when the used index passed used_event; otherwise unless VRING_AVAIL_F_NO_INTERRUPT is set.
    /// </summary>
    public bool ShouldNotify()
    {
        if (Failure is not null)
        {
            return false;
        }

        // The used index store must be visible before the driver's event index or flags are read.
        Interlocked.MemoryBarrier();
        ushort old = _lastNotifyUsed;
        ushort now = _nextUsed;
        _lastNotifyUsed = now;
        if (_eventIdx)
        {
            if (!TryReadU16(UsedEventAddress, out ushort usedEvent))
            {
                Fail(VirtqueueErrorKind.OutsideGuestMemory, $"used_event at {UsedEventAddress} unreadable");
                return false;
            }

            // Interrupt when used_event lies in [old, now): the wrap-safe form of the spec's rule.
            return (ushort)(now - usedEvent - 1) < (ushort)(now - old);
        }

        if (!TryReadU16(_avail, out ushort flags))
        {
            Fail(VirtqueueErrorKind.OutsideGuestMemory, $"avail flags at {_avail} unreadable");
            return false;
        }

        return now != old && (flags & VringFlags.VRING_AVAIL_F_NO_INTERRUPT) == 0;
    }

    /// <summary>Stop the queue with an error found outside the ring walk (e.g. a device could not write a buffer the chain named). The first failure wins.</summary>
    public VirtqueueError MarkBroken(VirtqueueErrorKind kind, string detail)
    {
        Fail(kind, detail);
        return Failure!;
    }

    private GuestAddress UsedEventAddress => new(_avail.Value + vring_avail.RingOffset + 2UL * Size);

    private GuestAddress AvailEventAddress => new(_used.Value + vring_used.RingOffset + (ulong)vring_used_elem.Size * Size);

    private VirtqueuePopResult Walk(DescriptorChain chain, ushort head)
    {
        chain.Start(head);
        if (head >= Size)
        {
            return Fail(VirtqueueErrorKind.IndexOutOfRange, $"head {head} >= queue size {Size}");
        }

        uint walk = NextWalkStamp();
        ushort index = head;
        int count = 0;
        while (true)
        {
            if (_visited[index] == walk)
            {
                return Fail(VirtqueueErrorKind.DescriptorLoop, $"chain from head {head} revisits descriptor {index}");
            }

            _visited[index] = walk;
            if (++count > Size)
            {
                return Fail(VirtqueueErrorKind.ChainTooLong, $"chain from head {head} is longer than the queue size {Size}");
            }

            var at = new GuestAddress(_descriptors.Value + (ulong)index * vring_desc.Size);
            if (!TryReadDescriptor(at, out var descriptor))
            {
                return Fail(VirtqueueErrorKind.OutsideGuestMemory, $"descriptor {index} at {at} unreadable");
            }

            if ((descriptor.flags & VringFlags.VRING_DESC_F_INDIRECT) != 0)
            {
                return WalkIndirect(chain, head, index, descriptor, walk);
            }

            if (!TryAppend(chain, descriptor, head, index, inIndirect: false, out var broken))
            {
                return broken;
            }

            if ((descriptor.flags & VringFlags.VRING_DESC_F_NEXT) == 0)
            {
                return VirtqueuePopResult.Chain;
            }

            if (descriptor.next >= Size)
            {
                return Fail(VirtqueueErrorKind.IndexOutOfRange, $"descriptor {index} of chain {head}: next {descriptor.next} >= queue size {Size}");
            }

            index = descriptor.next;
        }
    }

    private VirtqueuePopResult WalkIndirect(DescriptorChain chain, ushort head, ushort index, in vring_desc table, uint walk)
    {
        if (!_indirect)
        {
            return Fail(VirtqueueErrorKind.IndirectNotNegotiated, $"descriptor {index} of chain {head} is indirect but VIRTIO_RING_F_INDIRECT_DESC was not negotiated");
        }

        if ((table.flags & VringFlags.VRING_DESC_F_NEXT) != 0)
        {
            return Fail(VirtqueueErrorKind.IndirectWithNext, $"descriptor {index} of chain {head} has both INDIRECT and NEXT");
        }

        if (table.len == 0 || table.len % vring_desc.Size != 0)
        {
            return Fail(VirtqueueErrorKind.BadIndirectLength, $"indirect table of chain {head} has length {table.len} (a non-zero multiple of 16 needed)");
        }

        uint entries = table.len / vring_desc.Size;
        if (entries > Size)
        {
            return Fail(VirtqueueErrorKind.ChainTooLong, $"indirect table of chain {head} has {entries} entries, more than the queue size {Size}");
        }

        if (table.addr + table.len < table.addr)
        {
            return Fail(VirtqueueErrorKind.AddressOverflow, $"indirect table of chain {head} at 0x{table.addr:x}+{table.len} wraps");
        }

        if (!IsInMemory(_memory, new GuestAddress(table.addr), table.len))
        {
            return Fail(VirtqueueErrorKind.OutsideGuestMemory, $"indirect table of chain {head} at 0x{table.addr:x}+{table.len} is outside guest RAM");
        }

        ushort entry = 0;
        while (true)
        {
            if (_visitedIndirect[entry] == walk)
            {
                return Fail(VirtqueueErrorKind.DescriptorLoop, $"indirect table of chain {head} revisits entry {entry}");
            }

            _visitedIndirect[entry] = walk;
            var at = new GuestAddress(table.addr + (ulong)entry * vring_desc.Size);
            if (!TryReadDescriptor(at, out var descriptor))
            {
                return Fail(VirtqueueErrorKind.OutsideGuestMemory, $"indirect entry {entry} of chain {head} at {at} unreadable");
            }

            if ((descriptor.flags & VringFlags.VRING_DESC_F_INDIRECT) != 0)
            {
                return Fail(VirtqueueErrorKind.NestedIndirect, $"indirect entry {entry} of chain {head} is itself indirect");
            }

            if (!TryAppend(chain, descriptor, head, entry, inIndirect: true, out var broken))
            {
                return broken;
            }

            if ((descriptor.flags & VringFlags.VRING_DESC_F_NEXT) == 0)
            {
                return VirtqueuePopResult.Chain;
            }

            if (descriptor.next >= entries)
            {
                return Fail(VirtqueueErrorKind.IndexOutOfRange, $"indirect entry {entry} of chain {head}: next {descriptor.next} >= table size {entries}");
            }

            entry = descriptor.next;
        }
    }

    private bool TryAppend(DescriptorChain chain, in vring_desc descriptor, ushort head, ushort index, bool inIndirect, out VirtqueuePopResult broken)
    {
        string where = inIndirect ? "indirect entry" : "descriptor";
        broken = VirtqueuePopResult.Broken;
        var address = new GuestAddress(descriptor.addr);
        if (!address.TryAdd(descriptor.len, out _))
        {
            Fail(VirtqueueErrorKind.AddressOverflow, $"{where} {index} of chain {head}: 0x{descriptor.addr:x}+{descriptor.len} wraps");
            return false;
        }

        if (descriptor.len == 0)
        {
            // Carries nothing; left out so a device never sees its (unchecked) address.
            return true;
        }

        if (!IsInMemory(_memory, address, descriptor.len))
        {
            Fail(VirtqueueErrorKind.OutsideGuestMemory, $"{where} {index} of chain {head}: buffer 0x{descriptor.addr:x}+{descriptor.len} is outside guest RAM");
            return false;
        }

        bool writable = (descriptor.flags & VringFlags.VRING_DESC_F_WRITE) != 0;
        if (!chain.TryAppend(new VirtqueueSegment(address, descriptor.len, writable), out var kind))
        {
            Fail(kind, kind == VirtqueueErrorKind.LengthOverflow
                ? $"{where} {index} of chain {head}: the chain's {(writable ? "writable" : "readable")} lengths sum past 2^32 - 1"
                : $"{where} {index} of chain {head} is device-readable after a device-writable one");
            return false;
        }

        return true;
    }

    // A range is in guest RAM when it maps to host memory in one piece; a range across two pieces of RAM
    // is accepted when its first and last bytes are RAM (a byte inside that is not is still caught: every
    // later access is bounds-checked by IGuestMemory and fails as a whole).
    private static bool IsInMemory(IGuestMemory memory, GuestAddress address, ulong length)
    {
        if (!address.TryAdd(length, out _))
        {
            return false;
        }

        if (memory.TryGetHostAddress(address, length, forWrite: false, out _))
        {
            return true;
        }

        Span<byte> probe = stackalloc byte[1];
        return memory.TryRead(address, probe) && memory.TryRead(new GuestAddress(address.Value + length - 1), probe);
    }

    private uint NextWalkStamp()
    {
        if (++_walk == 0)
        {
            // Stamps wrapped: forget them all so an old stamp cannot look current.
            Array.Clear(_visited);
            Array.Clear(_visitedIndirect);
            _walk = 1;
        }

        return _walk;
    }

    private bool TryReadDescriptor(GuestAddress address, out vring_desc descriptor)
    {
        Span<byte> raw = stackalloc byte[vring_desc.Size];
        if (!_memory.TryRead(address, raw))
        {
            descriptor = default;
            return false;
        }

        descriptor = new vring_desc
        {
            addr = BinaryPrimitives.ReadUInt64LittleEndian(raw),
            len = BinaryPrimitives.ReadUInt32LittleEndian(raw[8..]),
            flags = BinaryPrimitives.ReadUInt16LittleEndian(raw[12..]),
            next = BinaryPrimitives.ReadUInt16LittleEndian(raw[14..]),
        };
        return true;
    }

    private bool TryReadU16(GuestAddress address, out ushort value)
    {
        Span<byte> raw = stackalloc byte[2];
        bool ok = _memory.TryRead(address, raw);
        value = BinaryPrimitives.ReadUInt16LittleEndian(raw);
        return ok;
    }

    private bool TryWriteU16(GuestAddress address, ushort value)
    {
        Span<byte> raw = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(raw, value);
        return _memory.TryWrite(address, raw);
    }

    private VirtqueuePopResult Fail(VirtqueueErrorKind kind, string detail)
    {
        Interlocked.CompareExchange(ref _failure, new VirtqueueError(Index, kind, detail), null);
        return VirtqueuePopResult.Broken;
    }
}
