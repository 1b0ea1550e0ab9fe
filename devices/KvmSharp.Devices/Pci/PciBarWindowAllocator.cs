namespace KvmSharp.Devices.Pci;

/// <summary>
/// The simplest <see cref="IPciBarAllocator"/>: each window is handed out upwards, aligned, never freed
/// (BARs are placed once, at attach time). Not thread-safe; attach functions from one thread.
/// </summary>
public sealed class PciBarWindowAllocator : IPciBarAllocator
{
    private readonly ulong _below4GEnd;
    private readonly ulong _above4GEnd;
    private ulong _below4GNext;
    private ulong _above4GNext;

    /// <param name="below4GBase">First address of the 32-bit window.</param>
    /// <param name="below4GSize">Its size; it must end at or below 4 GiB.</param>
    /// <param name="above4GBase">First address of the 64-bit window (above guest RAM).</param>
    /// <param name="above4GSize">Its size.</param>
    public PciBarWindowAllocator(ulong below4GBase, ulong below4GSize, ulong above4GBase, ulong above4GSize)
    {
        if (below4GBase + below4GSize > 1UL << 32 || below4GBase + below4GSize < below4GBase)
        {
            throw new ArgumentException(
                $"the 32-bit BAR window 0x{below4GBase:x} + 0x{below4GSize:x} must end at or below 4 GiB.", nameof(below4GSize));
        }

        if (above4GBase + above4GSize < above4GBase)
        {
            throw new ArgumentException(
                $"the 64-bit BAR window 0x{above4GBase:x} + 0x{above4GSize:x} wraps past the end of the address space.", nameof(above4GSize));
        }

        _below4GNext = below4GBase;
        _below4GEnd = below4GBase + below4GSize;
        _above4GNext = above4GBase;
        _above4GEnd = above4GBase + above4GSize;
    }

    public bool TryAllocate(PciBarWindow window, ulong size, ulong alignment, out ulong address)
    {
        if (size == 0 || !ulong.IsPow2(alignment))
        {
            throw new ArgumentException($"BAR size 0x{size:x} must be non-zero and alignment 0x{alignment:x} a power of two.");
        }

        ref ulong next = ref window == PciBarWindow.Below4G ? ref _below4GNext : ref _above4GNext;
        ulong end = window == PciBarWindow.Below4G ? _below4GEnd : _above4GEnd;
        ulong aligned = (next + alignment - 1) & ~(alignment - 1);
        if (aligned < next || aligned > end || end - aligned < size)
        {
            address = 0;
            return false;
        }

        address = aligned;
        next = aligned + size;
        return true;
    }
}
