using System.Runtime.CompilerServices;
using KvmSharp.Devices.Memory;

namespace KvmSharp.Tests.Unit.Devices.Virtio;

/// <summary>
/// Guest RAM for device tests: a pinned byte array holding RAM at [<see cref="Base"/>, Base + size),
/// between two guard regions filled with a pattern, so a test proves nothing was written outside RAM
/// (<see cref="GuardsIntact"/>). A read-only range refuses writes; host addresses can be switched off
/// (everything is copied) or refused for ranges that cross <see cref="HostAddressBoundary"/>.
/// </summary>
internal sealed unsafe class FakeGuestMemory : IGuestMemory
{
    public const int GuardBytes = 4096;
    public const byte GuardPattern = 0xA5;

    private readonly byte[] _bytes;
    private readonly object _gate = new();
    private readonly List<(ulong Address, ulong Length)> _commits = [];

    public FakeGuestMemory(ulong size, ulong baseAddress = 0)
    {
        Base = baseAddress;
        Size = size;
        _bytes = GC.AllocateArray<byte>(checked((int)size + 2 * GuardBytes), pinned: true);
        _bytes.AsSpan(0, GuardBytes).Fill(GuardPattern);
        _bytes.AsSpan(GuardBytes + (int)size).Fill(GuardPattern);
    }

    public ulong Base { get; }

    public ulong Size { get; }

    /// <summary>Give host addresses for zero-copy (else devices must copy).</summary>
    public bool HostAddresses { get; set; } = true;

    /// <summary>Ranges that cross this guest address get no host address (two pieces of RAM).</summary>
    public ulong? HostAddressBoundary { get; set; }

    /// <summary>A guest range that refuses writes (read-only memory).</summary>
    public (ulong Start, ulong End)? ReadOnlyRange { get; set; }

    public int WriteCount { get; private set; }

    /// <summary>Keep a list of CommitWrite ranges (off for allocation tests: the list grows).</summary>
    public bool RecordCommits { get; set; } = true;

    public int CommitCount { get; private set; }

    public IReadOnlyList<(ulong Address, ulong Length)> Commits
    {
        get
        {
            lock (_gate)
            {
                return [.. _commits];
            }
        }
    }

    public Span<byte> Ram => _bytes.AsSpan(GuardBytes, (int)Size);

    public Span<byte> At(ulong address, int length) => _bytes.AsSpan(GuardBytes + (int)(address - Base), length);

    public bool GuardsIntact()
        => !_bytes.AsSpan(0, GuardBytes).ContainsAnyExcept(GuardPattern) && !_bytes.AsSpan(GuardBytes + (int)Size).ContainsAnyExcept(GuardPattern);

    public bool TryRead(GuestAddress address, Span<byte> destination)
    {
        if (!Contains(address.Value, (ulong)destination.Length))
        {
            return false;
        }

        At(address.Value, destination.Length).CopyTo(destination);
        return true;
    }

    public bool TryWrite(GuestAddress address, ReadOnlySpan<byte> source)
    {
        if (!Contains(address.Value, (ulong)source.Length) || IsReadOnly(address.Value, (ulong)source.Length))
        {
            return false;
        }

        source.CopyTo(At(address.Value, source.Length));
        lock (_gate)
        {
            WriteCount++;
        }

        return true;
    }

    public bool TryGetHostAddress(GuestAddress address, ulong length, bool forWrite, out nint hostAddress)
    {
        hostAddress = 0;
        if (!HostAddresses || !Contains(address.Value, length) || (forWrite && IsReadOnly(address.Value, length)))
        {
            return false;
        }

        if (HostAddressBoundary is { } boundary && address.Value < boundary && address.Value + length > boundary)
        {
            return false;
        }

        hostAddress = (nint)Unsafe.AsPointer(ref _bytes[GuardBytes + (int)(address.Value - Base)]);
        return true;
    }

    public void CommitWrite(GuestAddress address, ulong length)
    {
        lock (_gate)
        {
            CommitCount++;
            if (RecordCommits)
            {
                _commits.Add((address.Value, length));
            }
        }
    }

    private bool Contains(ulong address, ulong length)
        => address >= Base && length <= Size && address - Base <= Size - length;

    private bool IsReadOnly(ulong address, ulong length)
        => ReadOnlyRange is { } range && address < range.End && address + length > range.Start;
}
