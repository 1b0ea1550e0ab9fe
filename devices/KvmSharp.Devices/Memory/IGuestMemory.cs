namespace KvmSharp.Devices.Memory;

/// <summary>
/// Guest RAM as a device sees it (DMA): bounds-checked, in one address space, never KVM. Reads and
/// writes that touch any byte outside guest RAM fail as a whole and change nothing, so a hostile
/// driver can never make a device write outside guest RAM. Every write is marked in the dirty log,
/// and a write to a write-tracked page is reported to the page-track notifiers as a device write
/// (the kernel never sees device writes, so KvmSharp reports them itself). Thread-safe: devices
/// call it from the event loop and from I/O workers.
/// </summary>
public interface IGuestMemory
{
    /// <summary>Copy guest RAM at <paramref name="address"/> into <paramref name="destination"/>; false when any byte is outside guest RAM.</summary>
    bool TryRead(GuestAddress address, Span<byte> destination);

    /// <summary>Copy <paramref name="source"/> into guest RAM; false, with nothing written, when any byte is outside writable guest RAM.</summary>
    bool TryWrite(GuestAddress address, ReadOnlySpan<byte> source);

    /// <summary>
    /// The host address of <c>[address, address + length)</c> for zero-copy I/O, when the range lies
    /// in one contiguous piece of guest RAM. With <paramref name="forWrite"/> it is also false when
    /// the range is read-only or holds a write-tracked page: the caller then copies through
    /// <see cref="TryWrite"/>, which reports the write. After writing through the returned address,
    /// call <see cref="CommitWrite"/>.
    /// </summary>
    bool TryGetHostAddress(GuestAddress address, ulong length, bool forWrite, out nint hostAddress);

    /// <summary>Record that the device wrote <c>[address, address + length)</c> through a host address (marks the dirty log).</summary>
    void CommitWrite(GuestAddress address, ulong length);
}
