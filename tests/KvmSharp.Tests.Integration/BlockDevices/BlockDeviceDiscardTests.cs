using KvmSharp.Devices.Virtio.Block;
using KvmSharp.Tests.Integration.Infrastructure;
using Tmds.Linux;
using Xunit;

namespace KvmSharp.Tests.Integration.BlockDevices;

/// <summary>
/// virtio-blk's discard and write-zeroes on a raw block device (a real loop device over a sparse-capable
/// file): BLKDISCARD and BLKZEROOUT, where a file would use fallocate.
/// </summary>
public sealed unsafe class BlockDeviceDiscardTests : IDisposable
{
    private const int Size = 8 << 20;
    private readonly string _directory = Directory.CreateTempSubdirectory("kvmsharp-blockdev-").FullName;
    private readonly string _backing;

    public BlockDeviceDiscardTests()
    {
        _backing = Path.Combine(_directory, "backing.img");
        var pattern = new byte[Size];
        Array.Fill(pattern, (byte)0xA5);
        File.WriteAllBytes(_backing, pattern);
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [LoopDeviceFact]
    public void Write_zeroes_on_a_block_device_reads_back_as_zeros_and_touches_nothing_else()
    {
        using var loop = LoopDevice.Attach(_backing);
        using (var image = BlockImage.Open(new DriveSpec(loop.Path)))
        {
            Assert.True(image.IsBlockDevice);
            Assert.Equal(Size, image.Length);
            Assert.Equal(0, image.WriteZeroes(1 << 20, 1 << 20, mayUnmap: false));
        }
        var bytes = ReadDevice(loop.Path);
        Assert.All(bytes.AsSpan(1 << 20, 1 << 20).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(0xA5, bytes[(1 << 20) - 1]);
        Assert.Equal(0xA5, bytes[2 << 20]);
    }

    [LoopDeviceFact]
    public void Discard_on_a_block_device_reaches_the_device()
    {
        using var loop = LoopDevice.Attach(_backing);
        long before = AllocatedBytes(_backing);
        using (var image = BlockImage.Open(new DriveSpec(loop.Path)))
        {
            // A loop device discards by punching holes in its file, where that file system can.
            Assert.True(image.CanDiscard, "the loop device's queue discards (discard_max_bytes > 0), so discard must be offered");
            Assert.Equal(0, image.Discard(0, 4 << 20));
        }
        long after = AllocatedBytes(_backing);
        Assert.True(after <= before - (4 << 20), $"the discard freed {before - after} bytes of the backing file; expected at least 4 MiB");
    }

    [LoopDeviceFact]
    public void A_read_only_block_device_offers_no_discard()
    {
        using var loop = LoopDevice.Attach(_backing);
        using var image = BlockImage.Open(new DriveSpec(loop.Path, ReadOnly: true));
        Assert.False(image.CanDiscard);
    }

    private static byte[] ReadDevice(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read);
        var bytes = new byte[Size];
        stream.ReadExactly(bytes);
        return bytes;
    }

    private static long AllocatedBytes(string path)
    {
        stat status;
        byte[] name = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = name)
        {
            Assert.Equal(0, LibC.stat(p, &status));
        }
        return status.st_blocks * 512;
    }
}
