using System.Numerics;

namespace KvmSharp.Memory.PageTracking;

/// <summary>
/// The kernel memslot ids of one address space that nobody holds, as a bitmap: 32,764 ids cost 4 KiB and
/// a few hundred word writes to set up, where a sorted set of them cost milliseconds and a megabyte at
/// start-up. Ids are handed out from the top so the user's low ids stay free for as long as possible.
/// </summary>
public sealed class FreeSlotIds
{
    private readonly ulong[] _bits;
    private readonly int _capacity;

    /// <summary>All ids 0..<paramref name="capacity"/>-1 free.</summary>
    public FreeSlotIds(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(capacity);
        _capacity = capacity;
        _bits = new ulong[(capacity + 63) / 64];
        Array.Fill(_bits, ulong.MaxValue);
        if (capacity % 64 != 0) _bits[^1] = (1UL << (capacity % 64)) - 1;
        Count = capacity;
    }

    public int Count { get; private set; }

    public bool Contains(ushort id) => id < _capacity && (_bits[id >> 6] & (1UL << (id & 63))) != 0;

    /// <summary>True when <paramref name="id"/> was free and is now taken.</summary>
    public bool Remove(ushort id)
    {
        if (!Contains(id)) return false;
        _bits[id >> 6] &= ~(1UL << (id & 63));
        Count--;
        return true;
    }

    /// <summary>True when <paramref name="id"/> was taken and is now free.</summary>
    public bool Add(ushort id)
    {
        if (id >= _capacity) throw new ArgumentOutOfRangeException(nameof(id), id, $"ids end at {_capacity - 1}");
        if (Contains(id)) return false;
        _bits[id >> 6] |= 1UL << (id & 63);
        Count++;
        return true;
    }

    /// <summary>The highest free id; throws when none is free (check <see cref="Count"/>).</summary>
    public ushort Max
    {
        get
        {
            for (int word = _bits.Length - 1; word >= 0; word--)
                if (_bits[word] != 0) return (ushort)((word << 6) + 63 - BitOperations.LeadingZeroCount(_bits[word]));
            throw new InvalidOperationException("no memslot id is free");
        }
    }

    /// <summary>Free ids from the highest down. The set must not change while this is enumerated.</summary>
    public IEnumerable<ushort> Descending()
    {
        for (int word = _bits.Length - 1; word >= 0; word--)
        {
            ulong bits = _bits[word];
            while (bits != 0)
            {
                int bit = 63 - BitOperations.LeadingZeroCount(bits);
                yield return (ushort)((word << 6) + bit);
                bits &= ~(1UL << bit);
            }
        }
    }
}
