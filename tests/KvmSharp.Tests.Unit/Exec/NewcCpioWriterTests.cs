using System.Globalization;
using System.Text;
using KvmSharp.Exec;
using Xunit;

namespace KvmSharp.Tests.Unit.Exec;

/// <summary>The exec initrd layer's cpio writer, read back by an independent newc reader.</summary>
public sealed class NewcCpioWriterTests
{
    private sealed record Entry(string Name, int Mode, byte[] Data, long HeaderOffset);

    // Reads newc as Linux's initramfs unpacker does: 110-byte header, name, 4-byte padding, data, padding.
    private static List<Entry> Read(byte[] archive)
    {
        var entries = new List<Entry>();
        int offset = 0;
        while (true)
        {
            Assert.Equal(0, offset % 4);
            string header = Encoding.ASCII.GetString(archive, offset, 110);
            Assert.Equal("070701", header[..6]);
            int Field(int index) => int.Parse(header.Substring(6 + index * 8, 8), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            int mode = Field(1), size = Field(6), nameSize = Field(11);
            string name = Encoding.UTF8.GetString(archive, offset + 110, nameSize - 1);
            Assert.Equal(0, archive[offset + 110 + nameSize - 1]);
            int dataStart = Align(offset + 110 + nameSize);
            if (name == "TRAILER!!!")
            {
                Assert.Equal(archive.Length, dataStart);
                return entries;
            }
            entries.Add(new Entry(name, mode, archive[dataStart..(dataStart + size)], offset));
            offset = Align(dataStart + size);
        }
    }

    private static int Align(int value) => (value + 3) & ~3;

    [Fact]
    public void Files_and_directories_read_back_with_their_modes_and_bytes()
    {
        var writer = new NewcCpioWriter();
        writer.AddDirectory("etc");
        writer.AddFile("etc/a", "x");
        writer.AddFile("kvmsharp-exec", "#!/bin/sh\necho hi\n", permissions: 0x1ED);
        writer.AddFile("empty", ReadOnlySpan<byte>.Empty);
        var entries = Read(writer.Finish());
        Assert.Equal(["etc", "etc/a", "kvmsharp-exec", "empty"], entries.Select(e => e.Name));
        Assert.Equal(0x41ED, entries[0].Mode);
        Assert.Equal(0x81A4, entries[1].Mode);
        Assert.Equal(0x81ED, entries[2].Mode);
        Assert.Equal("x", Encoding.UTF8.GetString(entries[1].Data));
        Assert.Equal("#!/bin/sh\necho hi\n", Encoding.UTF8.GetString(entries[2].Data));
        Assert.Empty(entries[3].Data);
    }

    [Fact]
    public void Every_name_and_data_length_keeps_4_byte_alignment()
    {
        for (int nameLength = 1; nameLength <= 9; nameLength++)
        for (int dataLength = 0; dataLength <= 9; dataLength++)
        {
            var writer = new NewcCpioWriter();
            var data = Enumerable.Range(0, dataLength).Select(i => (byte)(i + 1)).ToArray();
            writer.AddFile(new string('n', nameLength), data);
            writer.AddFile("second", "2");
            var entries = Read(writer.Finish());
            Assert.Equal(data, entries[0].Data);
            Assert.Equal("2", Encoding.UTF8.GetString(entries[1].Data));
        }
    }

    [Fact]
    public void Absolute_or_trailer_names_are_refused()
    {
        var writer = new NewcCpioWriter();
        Assert.Throws<ArgumentException>(() => writer.AddFile("/abs", "x"));
        Assert.Throws<ArgumentException>(() => writer.AddFile("TRAILER!!!", "x"));
        Assert.Throws<ArgumentException>(() => writer.AddFile("", "x"));
    }

    [Fact]
    public void The_layer_follows_the_base_initrd_at_a_4_byte_boundary()
    {
        string directory = Directory.CreateTempSubdirectory("kvmsharp-exec-cpio-").FullName;
        try
        {
            string baseInitrd = Path.Combine(directory, "base");
            File.WriteAllBytes(baseInitrd, [1, 2, 3, 4, 5]);
            byte[] layer = ExecGuestInit.Layer("exec 'true'\n", ["/tmp/x"]);
            using var output = new MemoryStream();
            ExecGuestInit.WriteCombined(output, baseInitrd, layer);
            byte[] combined = output.ToArray();
            Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 0, 0, 0 }, combined[..8]);
            var entries = Read(combined[8..]);
            Assert.Equal(["kvmsharp-exec", "kvmsharp-request", "kvmsharp-mounts"], entries.Select(e => e.Name));
            Assert.Contains("rw_share kvmsharp-rw0 '/tmp/x'", Encoding.UTF8.GetString(entries[2].Data));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
