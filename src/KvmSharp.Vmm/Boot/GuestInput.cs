namespace KvmSharp.Vmm.Boot;

/// <summary>Which input of a VM a <see cref="GuestInputException"/> refuses, so a front end can name its own setting.</summary>
public enum GuestInput
{
    Memory,
    Cpus,
    Kernel,
    Initrd,
    CommandLine,
    Image,
    Entry,
}
