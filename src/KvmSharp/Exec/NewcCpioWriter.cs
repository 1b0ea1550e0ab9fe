using System.Text;

namespace KvmSharp.Exec;

/// <summary>
/// Writes a "newc" cpio archive (the format Linux unpacks as an initramfs): 110-byte ASCII headers,
/// names and data each padded to 4 bytes, ended by TRAILER!!!. Only regular files and directories.
/// </summary>
public sealed class NewcCpioWriter
{
    public const string Magic = "070701";
    public const string Trailer = "TRAILER!!!";
    private const int RegularFile = 0x8000, Directory = 0x4000;

    private readonly MemoryStream _output = new();
    private uint _nextInode = 1;
    private bool _finished;

    public void AddDirectory(string name, int permissions = 0x1ED /* 0755 */) => AddEntry(name, Directory | permissions, [], nlink: 2);

    public void AddFile(string name, ReadOnlySpan<byte> data, int permissions = 0x1A4 /* 0644 */) => AddEntry(name, RegularFile | permissions, data, nlink: 1);

    public void AddFile(string name, string text, int permissions = 0x1A4) => AddFile(name, Encoding.UTF8.GetBytes(text), permissions);

    /// <summary>The archive, with its trailer.</summary>
    public byte[] Finish()
    {
        if (!_finished)
        {
            WriteEntry(Trailer, 0, [], nlink: 1, inode: 0);
            _finished = true;
        }
        return _output.ToArray();
    }

    private void AddEntry(string name, int mode, ReadOnlySpan<byte> data, int nlink)
    {
        if (_finished) throw new InvalidOperationException("the cpio archive is finished");
        if (name.Length == 0 || name.StartsWith('/') || name == Trailer || name.Contains('\0'))
            throw new ArgumentException($"invalid cpio entry name '{name}' (relative, no NUL)", nameof(name));
        WriteEntry(name, mode, data, nlink, _nextInode++);
    }

    private void WriteEntry(string name, int mode, ReadOnlySpan<byte> data, int nlink, uint inode)
    {
        byte[] nameBytes = Encoding.UTF8.GetBytes(name + "\0");
        var header = new StringBuilder(Magic);
        // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
        foreach (uint field in new[] { inode, (uint)mode, 0u, 0u, (uint)nlink, 0u, (uint)data.Length, 0u, 0u, 0u, 0u, (uint)nameBytes.Length, 0u })
            header.Append(field.ToString("X8"));
        _output.Write(Encoding.ASCII.GetBytes(header.ToString()));
        _output.Write(nameBytes);
        Pad();
        _output.Write(data);
        Pad();
    }

    private void Pad()
    {
        while (_output.Length % 4 != 0) _output.WriteByte(0);
    }
}
