using Iced.Intel;

namespace KvmSharp.Tests.Integration.Infrastructure;

/// <summary>
/// A flat 64-bit image in a temporary file, for `kvmsharp run --image`: code assembled with Iced at
/// <see cref="Address"/> (0x200000 unless told), written to <see cref="Path"/>, deleted on <see cref="Dispose"/>.
/// </summary>
public sealed class FlatImageFile : IDisposable
{
    public const ulong DefaultAddress = 0x200000;

    public FlatImageFile(string name, Action<Assembler> emit, ulong address = DefaultAddress)
    {
        var assembler = new Assembler(64);
        emit(assembler);
        var stream = new MemoryStream();
        assembler.Assemble(new StreamCodeWriter(stream), address);
        Address = address;
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"kvmsharp-{name}-{Environment.ProcessId}.bin");
        File.WriteAllBytes(Path, stream.ToArray());
    }

    /// <summary>Where the code was assembled to run, and so the address for --entry.</summary>
    public ulong Address { get; }

    /// <summary>The image file.</summary>
    public string Path { get; }

    /// <summary><see cref="Address"/> as `kvmsharp run --entry` takes it: 0x-prefixed hex.</summary>
    public string Entry => $"0x{Address:x}";

    public void Dispose() => File.Delete(Path);
}
