using KvmSharp.Devices.Virtio.Block;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio;

public sealed class BlockImageTests
{
    [Fact]
    public void A_writable_image_is_locked_against_every_other_open()
    {
        using var file = new TempImage(8);
        using var first = BlockImage.Open(new DriveSpec(file.Path));

        var writer = Assert.Throws<BlockImageException>(() => BlockImage.Open(new DriveSpec(file.Path)));
        Assert.Equal(BlockImageError.Locked, writer.Error);
        Assert.Contains("another process", writer.Message);
        Assert.Contains($"file={file.Path}", writer.Message);
        var reader = Assert.Throws<BlockImageException>(() => BlockImage.Open(new DriveSpec(file.Path, ReadOnly: true)));
        Assert.Equal(BlockImageError.Locked, reader.Error);
    }

    [Fact]
    public void Read_only_opens_share_but_exclude_a_writer_and_the_lock_goes_with_the_image()
    {
        using var file = new TempImage(8);
        var first = BlockImage.Open(new DriveSpec(file.Path, ReadOnly: true));
        using (BlockImage.Open(new DriveSpec(file.Path, ReadOnly: true)))
        {
            Assert.Equal(BlockImageError.Locked, Assert.Throws<BlockImageException>(() => BlockImage.Open(new DriveSpec(file.Path))).Error);
        }

        Assert.Equal(BlockImageError.Locked, Assert.Throws<BlockImageException>(() => BlockImage.Open(new DriveSpec(file.Path))).Error);
        first.Dispose();
        using var writer = BlockImage.Open(new DriveSpec(file.Path));
        Assert.False(writer.ReadOnly);
    }

    [Fact]
    public void A_missing_image_is_a_typed_one_line_error()
    {
        using var file = new TempImage(1);
        string missing = Path.Combine(file.Root, "nope.img");
        var error = Assert.Throws<BlockImageException>(() => BlockImage.Open(new DriveSpec(missing)));
        Assert.Equal(BlockImageError.Missing, error.Error);
        Assert.Equal("open", error.Operation);
        Assert.Equal(2, error.Errno);
        Assert.Contains("check the path", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void A_directory_or_a_fifo_is_not_an_image()
    {
        using var file = new TempImage(1);
        Assert.Equal(BlockImageError.NotAnImage, Assert.Throws<BlockImageException>(() => BlockImage.Open(new DriveSpec(file.Root, ReadOnly: true))).Error);
        Assert.Equal(BlockImageError.NotAnImage, Assert.Throws<BlockImageException>(() => BlockImage.Open(new DriveSpec(file.Root))).Error);
        string fifo = Path.Combine(file.Root, "fifo");
        Assert.Equal(0, MakeFifo(fifo));
        // O_RDWR on a FIFO does not wait for a peer on Linux, so the type check is reached.
        Assert.Equal(BlockImageError.NotAnImage, Assert.Throws<BlockImageException>(() => BlockImage.Open(new DriveSpec(fifo))).Error);
    }

    [Fact]
    public void Capacity_counts_whole_sectors()
    {
        using var file = new TempImage(3);
        File.AppendAllText(file.Path, "tail");
        using var image = BlockImage.Open(new DriveSpec(file.Path, Serial: "S1"));
        Assert.Equal(3 * 512 + 4, image.Length);
        Assert.Equal(3UL, image.CapacitySectors);
        Assert.Equal("S1"u8.ToArray(), image.SerialBytes.ToArray());
        Assert.False(image.IsBlockDevice);
    }

    [Fact]
    public void Cache_none_opens_with_o_direct_or_says_the_filesystem_refuses_it()
    {
        using var file = new TempImage(8);
        try
        {
            using var image = BlockImage.Open(new DriveSpec(file.Path, DirectIo: true));
            Assert.True(image.Spec.DirectIo);
        }
        catch (BlockImageException e)
        {
            Assert.Equal(BlockImageError.DirectIoUnsupported, e.Error);
        }
    }

    private static int MakeFifo(string path)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        unsafe
        {
            fixed (byte* p = bytes)
            {
                return Tmds.Linux.LibC.mkfifo(p, 0x180);
            }
        }
    }
}
