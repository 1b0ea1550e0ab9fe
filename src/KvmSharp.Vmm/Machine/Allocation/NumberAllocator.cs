namespace KvmSharp.Vmm.Machine.Allocation;

/// <summary>Hands out numbers from [First, Last] in increasing order, never twice (GSIs, PCI slots). Thread-safe.</summary>
public sealed class NumberAllocator(string name, uint first, uint last)
{
    private readonly Lock _lock = new();
    private uint _next = first;
    private bool _exhausted = first > last;

    public string Name { get; } = name;
    public uint First { get; } = first;
    public uint Last { get; } = last;

    /// <summary>How many have been handed out.</summary>
    public uint Allocated
    {
        get { lock (_lock) return _exhausted ? Last - First + 1 : _next - First; }
    }

    /// <exception cref="ResourceExhaustedException">All of [First, Last] are taken.</exception>
    public uint Allocate(string owner)
    {
        lock (_lock)
        {
            if (_exhausted)
                throw new ResourceExhaustedException(Name, $"{Name}: all {(ulong)Last - First + 1} of {First}-{Last} are taken; none left for '{owner}'");
            uint value = _next;
            if (value == Last) _exhausted = true;
            else _next++;
            return value;
        }
    }
}
