namespace KvmSharp.Devices.Bus;

/// <summary>
/// Routes guest accesses on one address space (port I/O or MMIO) to the device owning the address.
/// </summary>
/// <remarks>
/// Dispatch runs on vCPU threads, so it takes no lock and allocates nothing: it binary-searches an immutable
/// array sorted by base address. Registration is rare; it serializes writers with a lock, builds a new array
/// and publishes it with <see cref="Volatile.Write{T}(ref T, T)"/>, so a concurrent dispatch sees either the
/// old or the new set of ranges, never a half-built one.
/// </remarks>
public sealed class DeviceBus
{
    private readonly Lock _registrationLock = new();
    private readonly byte _unmappedReadValue;
    private Mapping[] _mappings = [];
    private BusRange[] _rangesById = [];
    private long _unhandledReads;
    private long _unhandledWrites;
    private ulong _lastUnhandledAddress;

    /// <param name="name">Short name used in messages, e.g. "pio" or "mmio".</param>
    /// <param name="unmappedReadValue">Byte returned for reads nobody claims; 0xff is what an empty ISA/PCI bus floats to.</param>
    public DeviceBus(string name, byte unmappedReadValue = 0xff)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        Name = name;
        _unmappedReadValue = unmappedReadValue;
    }

    /// <summary>Name given at construction ("pio", "mmio", ...).</summary>
    public string Name { get; }

    /// <summary>Reads that no device claimed since construction.</summary>
    public long UnhandledReads => Interlocked.Read(ref _unhandledReads);

    /// <summary>Writes that no device claimed since construction.</summary>
    public long UnhandledWrites => Interlocked.Read(ref _unhandledWrites);

    /// <summary>Address of the most recent unclaimed access (0 if there was none).</summary>
    public ulong LastUnhandledAddress => Volatile.Read(ref _lastUnhandledAddress);

    /// <summary>Snapshot of the registered ranges, sorted by base address. Allocates; for diagnostics only.</summary>
    public IReadOnlyList<BusRange> Ranges
    {
        get
        {
            Mapping[] mappings = Volatile.Read(ref _mappings);
            var ranges = new BusRange[mappings.Length];
            for (int i = 0; i < mappings.Length; i++)
            {
                ranges[i] = mappings[i].Range;
            }

            return Array.AsReadOnly(ranges);
        }
    }

    /// <summary>
    /// How many range ids have been handed out: every <see cref="Register"/> call gets the next one, never reused,
    /// so per-range statistics can be kept in preallocated arrays indexed by id.
    /// </summary>
    public int RangeIdCount => Volatile.Read(ref _rangesById).Length;

    /// <summary>The range that was registered with id <paramref name="rangeId"/> (it may have been unregistered since).</summary>
    public BusRange RangeById(int rangeId) => Volatile.Read(ref _rangesById)[rangeId];

    /// <summary>
    /// Map <paramref name="device"/> at [<paramref name="baseAddress"/>, <paramref name="baseAddress"/> + <paramref name="length"/>).
    /// The same device may be registered at several ranges.
    /// </summary>
    /// <exception cref="ArgumentException">The length is zero, the range wraps past the end of the address space,
    /// or it overlaps a range already registered (the message names both devices and both ranges).</exception>
    public void Register(ulong baseAddress, ulong length, IBusDevice device, string name)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (length == 0)
        {
            throw new ArgumentException(
                $"{Name} bus: cannot register '{name}' at 0x{baseAddress:x} with a zero length.", nameof(length));
        }

        if (length - 1 > ulong.MaxValue - baseAddress)
        {
            throw new ArgumentException(
                $"{Name} bus: cannot register '{name}' at 0x{baseAddress:x} with length 0x{length:x}: the range wraps past the end of the address space.",
                nameof(length));
        }

        var range = new BusRange(baseAddress, length, name);
        lock (_registrationLock)
        {
            Mapping[] current = _mappings;
            int insertAt = current.Length;
            for (int i = 0; i < current.Length; i++)
            {
                if (current[i].Range.Overlaps(range))
                {
                    throw new ArgumentException(
                        $"{Name} bus: cannot register {range}: it overlaps {current[i].Range}.", nameof(baseAddress));
                }

                if (insertAt == current.Length && current[i].Range.BaseAddress > baseAddress)
                {
                    insertAt = i;
                }
            }

            BusRange[] ids = _rangesById;
            var nextIds = new BusRange[ids.Length + 1];
            Array.Copy(ids, nextIds, ids.Length);
            nextIds[ids.Length] = range;
            Volatile.Write(ref _rangesById, nextIds);

            var next = new Mapping[current.Length + 1];
            Array.Copy(current, 0, next, 0, insertAt);
            next[insertAt] = new Mapping(range, device, ids.Length);
            Array.Copy(current, insertAt, next, insertAt + 1, current.Length - insertAt);
            Volatile.Write(ref _mappings, next);
        }
    }

    /// <summary>
    /// Map <paramref name="device"/> like <see cref="Register"/>, for ranges the guest places (PCI BARs): an overlap or
    /// a wrapping range is answered with false and maps nothing, instead of an exception a guest could provoke. With
    /// <paramref name="rangeId"/> &gt;= 0 the range takes that id again (one handed out earlier to the same device and
    /// unmapped since), so a guest that moves a BAR or toggles its decoding forever cannot grow the id table;
    /// with -1 a new id is handed out and stored in <paramref name="rangeId"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The length is zero, or <paramref name="rangeId"/> is unknown or still mapped (a VMM bug, not a guest's).</exception>
    public bool TryRegister(ulong baseAddress, ulong length, IBusDevice device, string name, ref int rangeId)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (length == 0)
        {
            throw new ArgumentException(
                $"{Name} bus: cannot register '{name}' at 0x{baseAddress:x} with a zero length.", nameof(length));
        }

        if (length - 1 > ulong.MaxValue - baseAddress)
        {
            return false;
        }

        var range = new BusRange(baseAddress, length, name);
        lock (_registrationLock)
        {
            Mapping[] current = _mappings;
            BusRange[] ids = _rangesById;
            if (rangeId >= ids.Length || rangeId < -1)
            {
                throw new ArgumentException($"{Name} bus: range id {rangeId} was never handed out.", nameof(rangeId));
            }

            int insertAt = current.Length;
            for (int i = 0; i < current.Length; i++)
            {
                if (rangeId >= 0 && current[i].RangeId == rangeId)
                {
                    throw new ArgumentException($"{Name} bus: range id {rangeId} ({current[i].Range}) is still mapped.", nameof(rangeId));
                }

                if (current[i].Range.Overlaps(range))
                {
                    return false;
                }

                if (insertAt == current.Length && current[i].Range.BaseAddress > baseAddress)
                {
                    insertAt = i;
                }
            }

            // The id table is copied, not written in place, so RangeById never sees a torn range.
            int id = rangeId >= 0 ? rangeId : ids.Length;
            var nextIds = new BusRange[rangeId >= 0 ? ids.Length : ids.Length + 1];
            Array.Copy(ids, nextIds, ids.Length);
            nextIds[id] = range;
            Volatile.Write(ref _rangesById, nextIds);

            var next = new Mapping[current.Length + 1];
            Array.Copy(current, 0, next, 0, insertAt);
            next[insertAt] = new Mapping(range, device, id);
            Array.Copy(current, insertAt, next, insertAt + 1, current.Length - insertAt);
            Volatile.Write(ref _mappings, next);
            rangeId = id;
            return true;
        }
    }

    /// <summary>Remove every range mapped to <paramref name="device"/>.</summary>
    /// <returns>Whether the device had at least one range.</returns>
    public bool Unregister(IBusDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        lock (_registrationLock)
        {
            Mapping[] current = _mappings;
            int kept = 0;
            foreach (Mapping mapping in current)
            {
                if (!ReferenceEquals(mapping.Device, device))
                {
                    kept++;
                }
            }

            if (kept == current.Length)
            {
                return false;
            }

            var next = new Mapping[kept];
            int n = 0;
            foreach (Mapping mapping in current)
            {
                if (!ReferenceEquals(mapping.Device, device))
                {
                    next[n++] = mapping;
                }
            }

            Volatile.Write(ref _mappings, next);
            return true;
        }
    }

    /// <summary>
    /// Dispatch a guest read to the device whose range holds <paramref name="address"/>, with the offset from its base.
    /// The device whose range holds the first byte gets the whole access.
    /// </summary>
    /// <returns>false if no device claims the address; <paramref name="data"/> is then filled with the unmapped value.</returns>
    public bool Read(ulong address, Span<byte> data) => Read(address, data, out _);

    /// <summary>Like <see cref="Read(ulong, Span{byte})"/>, also telling which range took the access (-1: none).</summary>
    public bool Read(ulong address, Span<byte> data, out int rangeId)
    {
        Mapping[] mappings = Volatile.Read(ref _mappings);
        int index = FindMapping(mappings, address);
        if (index < 0)
        {
            data.Fill(_unmappedReadValue);
            Interlocked.Increment(ref _unhandledReads);
            Volatile.Write(ref _lastUnhandledAddress, address);
            rangeId = -1;
            return false;
        }

        ref readonly Mapping mapping = ref mappings[index];
        rangeId = mapping.RangeId;
        mapping.Device.Read(address - mapping.Range.BaseAddress, data);
        return true;
    }

    /// <summary>Dispatch a guest write like <see cref="Read"/>.</summary>
    /// <returns>false if no device claims the address; the write is then dropped.</returns>
    public bool Write(ulong address, ReadOnlySpan<byte> data) => Write(address, data, out _);

    /// <summary>Like <see cref="Write(ulong, ReadOnlySpan{byte})"/>, also telling which range took the access (-1: none).</summary>
    public bool Write(ulong address, ReadOnlySpan<byte> data, out int rangeId)
    {
        Mapping[] mappings = Volatile.Read(ref _mappings);
        int index = FindMapping(mappings, address);
        if (index < 0)
        {
            Interlocked.Increment(ref _unhandledWrites);
            Volatile.Write(ref _lastUnhandledAddress, address);
            rangeId = -1;
            return false;
        }

        ref readonly Mapping mapping = ref mappings[index];
        rangeId = mapping.RangeId;
        mapping.Device.Write(address - mapping.Range.BaseAddress, data);
        return true;
    }

    // Ranges never overlap, so at most one can contain the address and plain binary search finds it.
    private static int FindMapping(Mapping[] mappings, ulong address)
    {
        int low = 0;
        int high = mappings.Length - 1;
        while (low <= high)
        {
            int middle = low + ((high - low) >> 1);
            BusRange range = mappings[middle].Range;
            if (address < range.BaseAddress)
            {
                high = middle - 1;
            }
            else if (address - range.BaseAddress >= range.Length)
            {
                low = middle + 1;
            }
            else
            {
                return middle;
            }
        }

        return -1;
    }

    private readonly record struct Mapping(BusRange Range, IBusDevice Device, int RangeId);
}
