namespace KvmSharp.Devices.Pci;

/// <summary>
/// Hands out guest-physical addresses for BARs when a function is attached. The VMM backs it with its
/// address-space allocator (the windows it also describes to the guest in the root bridge's _CRS);
/// <see cref="PciBarWindowAllocator"/> is a ready-made one over two fixed windows.
/// </summary>
public interface IPciBarAllocator
{
    /// <summary>An address in <paramref name="window"/> for <paramref name="size"/> bytes aligned to <paramref name="alignment"/> (both powers of two); false when the window is full.</summary>
    bool TryAllocate(PciBarWindow window, ulong size, ulong alignment, out ulong address);
}
