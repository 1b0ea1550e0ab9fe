using System.Text;
using KvmSharp.Terminal;
using Tmds.Linux;
using Xunit;

namespace KvmSharp.Tests.Unit.Terminal;

/// <summary>Opening `--serial` destinations: real files, directories and FIFOs.</summary>
public sealed class SerialOutputTests : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);
    private readonly string _directory = Directory.CreateTempSubdirectory("kvmsharp-serial-").FullName;

    [Fact]
    public void A_regular_file_is_created_and_receives_the_output()
    {
        string path = Path.Combine(_directory, "console.log");
        using (var sink = SerialOutput.Open(path))
        {
            foreach (byte b in "hello\n"u8) sink.Write(b);
            Assert.True(sink.Flush(Patience));
        }

        Assert.Equal("hello\n", File.ReadAllText(path));
    }

    [Fact]
    public void A_directory_is_refused_naming_it_and_the_reason()
    {
        var error = Assert.Throws<IOException>(() => SerialOutput.Open(_directory));

        Assert.Equal($"cannot open the serial output '{_directory}' (--serial): Is a directory (errno 21)", error.Message);
    }

    [Fact]
    public unsafe void A_fifo_without_reader_does_not_block_and_its_output_flows_once_a_reader_comes()
    {
        string fifo = Path.Combine(_directory, "console.fifo");
        byte[] name = Encoding.UTF8.GetBytes(fifo + "\0");
        fixed (byte* p = name) Assert.Equal(0, LibC.mkfifo(p, 0b110_000_000));

        using var sink = SerialOutput.Open(fifo); // would block here if opened on this thread
        foreach (byte b in "early\n"u8) sink.Write(b);

        using var reader = new FileStream(fifo, FileMode.Open, FileAccess.Read);
        var late = "late\n"u8.ToArray();
        // Wait for the writer to have opened its end, then send a line it must deliver.
        Assert.True(SpinWait.SpinUntil(() =>
        {
            foreach (byte b in late) sink.Write(b);
            return sink.Flush(TimeSpan.FromMilliseconds(100));
        }, Patience));

        var received = new byte[5];
        reader.ReadExactly(received);
        Assert.Equal("early", Encoding.ASCII.GetString(received)); // held in the buffer while nobody read
        Assert.Null(sink.Failure);
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}
