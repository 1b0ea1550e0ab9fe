using KvmSharp.Vmm.Boot;

namespace KvmSharp.Vmm.Machine;

/// <summary>
/// A flat guest binary: copied to <see cref="LoadAddress"/>, entered at <see cref="Entry"/> in <see cref="Mode"/>.
/// In long mode the entry gets rdi = RAM size in bytes, rsi = vCPU id, rdx = vCPU count.
/// </summary>
public sealed record GuestImage(byte[] Bytes, ulong LoadAddress, ulong Entry, CpuMode Mode, string Name)
{
    public static GuestImage FromFile(string path, ulong entry, CpuMode mode, ulong? loadAddress = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"guest image '{path}' does not exist", path);
        return new GuestImage(File.ReadAllBytes(path), loadAddress ?? entry, entry, mode, Path.GetFileName(path));
    }
}
