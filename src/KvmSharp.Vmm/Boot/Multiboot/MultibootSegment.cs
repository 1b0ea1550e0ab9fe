namespace KvmSharp.Vmm.Boot.Multiboot;

/// <summary>Bytes of a multiboot kernel placed at <see cref="PhysicalAddress"/>, zero-filled up to <see cref="MemorySize"/>.</summary>
public sealed record MultibootSegment(ulong PhysicalAddress, byte[] Bytes, ulong MemorySize, string Source)
{
    public ulong End => PhysicalAddress + MemorySize;

    public bool HoldsCode(ulong address) => address >= PhysicalAddress && address - PhysicalAddress < (ulong)Bytes.Length;
}
