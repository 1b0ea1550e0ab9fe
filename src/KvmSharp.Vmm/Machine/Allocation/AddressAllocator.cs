namespace KvmSharp.Vmm.Machine.Allocation;

/// <summary>
/// Hands out aligned, non-overlapping ranges of one address window (first fit, lowest address first),
/// skipping ranges reserved for fixed hardware. What is free is described by <see cref="Windows"/>
/// (the window minus the reserved ranges), which is what the firmware tables tell the guest.
/// Thread-safe; setup-time only.
/// </summary>
public sealed class AddressAllocator
{
    private readonly Lock _lock = new();
    private readonly List<(AddressWindow Range, string Owner)> _taken = new();

    /// <param name="name">The pool's name in messages, e.g. "mmio32".</param>
    /// <param name="window">The whole range the pool covers.</param>
    /// <param name="reserved">Ranges inside it that are never handed out (fixed hardware).</param>
    public AddressAllocator(string name, AddressWindow window, IEnumerable<(AddressWindow Range, string Owner)>? reserved = null)
    {
        if (window.End <= window.Start) throw new ArgumentException($"{name}: the window {window} is empty", nameof(window));
        Name = name;
        Window = window;
        var holes = (reserved ?? []).Where(r => r.Range.Overlaps(window)).OrderBy(r => r.Range.Start).ToList();
        Reserved = holes;
        var free = new List<AddressWindow>();
        ulong cursor = window.Start;
        foreach (var (range, _) in holes)
        {
            if (range.Start > cursor) free.Add(new AddressWindow(cursor, range.Start));
            cursor = Math.Max(cursor, range.End);
        }
        if (cursor < window.End) free.Add(new AddressWindow(cursor, window.End));
        Windows = free;
    }

    public string Name { get; }
    public AddressWindow Window { get; }

    /// <summary>The fixed ranges this pool never hands out.</summary>
    public IReadOnlyList<(AddressWindow Range, string Owner)> Reserved { get; }

    /// <summary>The window minus the reserved ranges: where allocations may land.</summary>
    public IReadOnlyList<AddressWindow> Windows { get; }

    /// <summary>What has been handed out, lowest first.</summary>
    public IReadOnlyList<(AddressWindow Range, string Owner)> Allocations
    {
        get { lock (_lock) return _taken.OrderBy(t => t.Range.Start).ToList(); }
    }

    /// <summary>
    /// <paramref name="size"/> bytes aligned to <paramref name="alignment"/> (a power of two; 0 means
    /// the size's own alignment, as PCI BARs need) for <paramref name="owner"/>.
    /// </summary>
    /// <exception cref="ResourceExhaustedException">No free range is large enough.</exception>
    public AddressWindow Allocate(ulong size, string owner, ulong alignment = 0)
    {
        if (size == 0) throw new ArgumentOutOfRangeException(nameof(size), $"{Name}: '{owner}' asked for 0 bytes");
        if (alignment == 0) alignment = size.IsPow2() ? size : 1;
        if (!alignment.IsPow2()) throw new ArgumentOutOfRangeException(nameof(alignment), $"{Name}: alignment 0x{alignment:x} for '{owner}' is not a power of two");
        lock (_lock)
        {
            foreach (var window in Windows)
            {
                ulong candidate = AlignUp(window.Start, alignment);
                while (candidate >= window.Start && candidate <= window.End && window.End - candidate >= size)
                {
                    var range = new AddressWindow(candidate, candidate + size);
                    var clash = _taken.FirstOrDefault(t => t.Range.Overlaps(range));
                    if (clash.Owner is null)
                    {
                        _taken.Add((range, owner));
                        return range;
                    }
                    ulong next = AlignUp(clash.Range.End, alignment);
                    if (next <= candidate) break; // wrapped
                    candidate = next;
                }
            }
            throw new ResourceExhaustedException(Name,
                $"{Name}: no room for 0x{size:x} bytes aligned to 0x{alignment:x} for '{owner}' in {string.Join(" + ", Windows)} ({_taken.Count} ranges already taken)");
        }
    }

    /// <summary>Claim exactly <paramref name="range"/> for <paramref name="owner"/> (fixed hardware such as ECAM).</summary>
    /// <exception cref="ArgumentException">The range leaves the free windows or overlaps an allocation.</exception>
    public AddressWindow Claim(AddressWindow range, string owner)
    {
        lock (_lock)
        {
            if (!Windows.Any(w => w.Contains(range)))
                throw new ArgumentException($"{Name}: {range} for '{owner}' is not inside the free windows {string.Join(" + ", Windows)}", nameof(range));
            var clash = _taken.FirstOrDefault(t => t.Range.Overlaps(range));
            if (clash.Owner is not null)
                throw new ArgumentException($"{Name}: {range} for '{owner}' overlaps {clash.Range} of '{clash.Owner}'", nameof(range));
            _taken.Add((range, owner));
            return range;
        }
    }

    private static ulong AlignUp(ulong value, ulong alignment) => (value + alignment - 1) & ~(alignment - 1);
}

internal static class PowerOfTwo
{
    public static bool IsPow2(this ulong value) => value != 0 && (value & (value - 1)) == 0;
}
