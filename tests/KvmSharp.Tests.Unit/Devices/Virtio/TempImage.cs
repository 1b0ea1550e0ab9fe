namespace KvmSharp.Tests.Unit.Devices.Virtio;

/// <summary>A raw image file in a fresh temporary directory with a known pattern (byte i = i * 7 + i / 512), deleted on dispose.</summary>
internal sealed class TempImage : IDisposable
{
    public TempImage(int sectors, string name = "disk.img")
    {
        Directory.CreateDirectory(Root);
        Path = System.IO.Path.Combine(Root, name);
        var bytes = new byte[sectors * 512];
        for (int i = 0; i < bytes.Length; i++)
        {
            bytes[i] = (byte)(i * 7 + i / 512);
        }

        File.WriteAllBytes(Path, bytes);
        Original = bytes;
    }

    public string Root { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"kvmsharp-virtio-{Guid.NewGuid():N}");

    public string Path { get; }

    public byte[] Original { get; }

    public byte[] Contents => File.ReadAllBytes(Path);

    public void Dispose() => Directory.Delete(Root, recursive: true);
}
