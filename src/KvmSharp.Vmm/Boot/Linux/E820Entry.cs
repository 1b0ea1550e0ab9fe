namespace KvmSharp.Vmm.Boot.Linux;

/// <summary>One entry of the BIOS e820 memory map handed to Linux in the zero page.</summary>
public readonly record struct E820Entry(ulong Address, ulong Size, E820Type Type);

public enum E820Type : uint
{
    Ram = 1,
    Reserved = 2,
}
