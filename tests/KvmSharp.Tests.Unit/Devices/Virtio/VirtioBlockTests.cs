using System.Buffers.Binary;
using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Block;
using KvmSharp.Devices.Virtio.Queues;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio;

public sealed class VirtioBlockTests
{
    private const int Sectors = 64;
    private const ulong Data = BlockRig.DataArea;

    [Fact]
    public void A_read_returns_the_image_bytes_and_the_data_plus_status_length()
    {
        using var image = new TempImage(Sectors);
        using var rig = new BlockRig(image);

        var (status, used) = rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_IN, 3, (Data, 1024, true));

        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_OK, status);
        Assert.Equal(1025u, used);
        Assert.Equal(image.Original.AsSpan(3 * 512, 1024).ToArray(), rig.Memory.At(Data, 1024).ToArray());
        Assert.Contains(rig.Memory.Commits, c => c.Address == Data && c.Length == 1024); // zero-copy path marked dirty
        Assert.True(SpinWait.SpinUntil(() => rig.Interrupt.QueueNotifications(0) >= 1, BlockRig.CompletionTimeout)); // raised just after the used index moves
        Assert.True(rig.Memory.GuardsIntact());
    }

    [Fact]
    public void A_write_then_read_back_round_trips_through_the_file()
    {
        using var image = new TempImage(Sectors);
        using var rig = new BlockRig(image);
        var written = new byte[1536];
        Random.Shared.NextBytes(written);
        written.CopyTo(rig.Memory.At(Data, written.Length));

        // Three buffers of odd sizes that add up to three sectors.
        var (status, used) = rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_OUT, 10, (Data, 100, false), (Data + 100, 1000, false), (Data + 1100, 436, false));
        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_OK, status);
        Assert.Equal(1u, used);
        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_OK, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_FLUSH, 0).Status);

        Assert.Equal(written, image.Contents.AsSpan(10 * 512, written.Length).ToArray());
        rig.Memory.At(Data + 0x10000, written.Length).Clear();
        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_OK, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_IN, 10, (Data + 0x10000, 1536, true)).Status);
        Assert.Equal(written, rig.Memory.At(Data + 0x10000, written.Length).ToArray());
        // The metrics' counters: one write and one read of three sectors each (the flush moves no data).
        var io = rig.Device.Io;
        Assert.Equal((1, 1536, 1, 1536), (io.ReadOps, io.ReadBytes, io.WriteOps, io.WriteBytes));
        // Everything else in the file is untouched.
        var contents = image.Contents;
        Assert.Equal(image.Original.AsSpan(0, 10 * 512).ToArray(), contents.AsSpan(0, 10 * 512).ToArray());
        Assert.Equal(image.Original.AsSpan(13 * 512).ToArray(), contents.AsSpan(13 * 512).ToArray());
    }

    [Fact]
    public void Without_host_addresses_reads_and_writes_go_through_the_bounce_buffer()
    {
        using var image = new TempImage(Sectors);
        using var rig = new BlockRig(image);
        rig.Memory.HostAddresses = false;
        var written = new byte[2048];
        Random.Shared.NextBytes(written);
        written.CopyTo(rig.Memory.At(Data, written.Length));

        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_OK, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_OUT, 20, (Data, 2048, false)).Status);
        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_OK, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_IN, 20, (Data + 0x8000, 700, true), (Data + 0x9000, 1348, true)).Status);

        Assert.Equal(written, image.Contents.AsSpan(20 * 512, 2048).ToArray());
        Assert.Equal(written.AsSpan(0, 700).ToArray(), rig.Memory.At(Data + 0x8000, 700).ToArray());
        Assert.Equal(written.AsSpan(700).ToArray(), rig.Memory.At(Data + 0x9000, 1348).ToArray());
        Assert.Empty(rig.Memory.Commits);
    }

    [Fact]
    public void Cache_none_reads_and_writes_through_o_direct_even_from_unaligned_guest_buffers()
    {
        using var image = new TempImage(Sectors);
        BlockImage probe;
        try
        {
            probe = BlockImage.Open(new DriveSpec(image.Path, DirectIo: true));
        }
        catch (BlockImageException e) when (e.Error == BlockImageError.DirectIoUnsupported)
        {
            return; // the filesystem refuses O_DIRECT: Open said so, which is the behaviour under test there
        }

        probe.Dispose();
        using var rig = new BlockRig(image, new DriveSpec(image.Path, DirectIo: true));
        var written = new byte[4096];
        Random.Shared.NextBytes(written);
        // An odd guest address: O_DIRECT refuses it (EINVAL) and the device retries through its aligned buffer.
        written.CopyTo(rig.Memory.At(Data + 3, written.Length));
        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_OK, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_OUT, 8, (Data + 3, 4096, false)).Status);
        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_OK, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_IN, 8, (Data + 0x10001, 4096, true)).Status);
        Assert.Equal(written, rig.Memory.At(Data + 0x10001, 4096).ToArray());
        Assert.Equal(written, image.Contents.AsSpan(8 * 512, 4096).ToArray());
    }

    [Fact]
    public void Get_id_returns_the_serial_padded_to_20_bytes()
    {
        using var image = new TempImage(Sectors);
        using var rig = new BlockRig(image, new DriveSpec(image.Path, Serial: "root-disk-1"));
        rig.Memory.At(Data, 20).Fill(0xEE);

        var (status, used) = rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_GET_ID, 0, (Data, 20, true));

        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_OK, status);
        Assert.Equal(21u, used);
        Assert.Equal("root-disk-1"u8.ToArray().Concat(new byte[9]).ToArray(), rig.Memory.At(Data, 20).ToArray());
    }

    [Theory]
    [InlineData(Sectors, 512)]          // starts at the end
    [InlineData(Sectors - 1, 1024)]     // runs past the end
    [InlineData(ulong.MaxValue / 512, 512)]
    [InlineData(ulong.MaxValue, 512)]   // sector * 512 wraps
    [InlineData(0, 100)]                // not a whole sector
    public void Out_of_range_or_partial_sectors_are_io_errors(ulong sector, uint length)
    {
        using var image = new TempImage(Sectors);
        using var rig = new BlockRig(image);
        rig.Memory.At(Data, (int)length).Fill(0xCC);

        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_IOERR, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_IN, sector, (Data, length, true)).Status);
        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_IOERR, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_OUT, sector, (Data, length, false)).Status);
        Assert.Equal(image.Original, image.Contents);
        Assert.False(rig.Memory.At(Data, (int)length).ContainsAnyExcept((byte)0xCC));
    }

    [Fact]
    public void A_failing_host_read_is_an_io_error_counted_and_logged_with_its_errno()
    {
        using var image = new TempImage(Sectors);
        using var rig = new BlockRig(image);
        // The image shrinks behind the VMM's back (the lock is advisory): a read past the new end hits end of file.
        using (var file = new FileStream(image.Path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
        {
            file.SetLength(8 * 512);
        }

        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_IOERR, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_IN, 20, (Data, 512, true)).Status);
        Assert.Equal(1, rig.Device.HostFailures);
        var entry = Assert.Single(rig.Logger.Entries, e => e.EventId == 4);
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Warning, entry.Level);
        Assert.Contains("errno 5", entry.Message);
        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_OK, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_IN, 2, (Data, 512, true)).Status);
        Assert.Equal(1, rig.Device.HostFailures);
        Assert.Equal((1, 512), (rig.Device.Io.ReadOps, rig.Device.Io.ReadBytes)); // the failed read is not counted as I/O done
    }

    [Fact]
    public void Unknown_request_types_are_unsupported()
    {
        using var image = new TempImage(Sectors);
        using var rig = new BlockRig(image);
        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_UNSUPP, rig.Run((VirtioBlockRequestType)2, 0, (Data, 512, true)).Status);
        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_UNSUPP, rig.Run((VirtioBlockRequestType)0x7777, 0).Status);
    }

    [Fact]
    public void A_read_only_drive_offers_RO_refuses_writes_with_ioerr_and_leaves_the_file_byte_identical()
    {
        using var image = new TempImage(Sectors);
        using var rig = new BlockRig(image, new DriveSpec(image.Path, ReadOnly: true));
        Assert.NotEqual(0UL, rig.Device.AvailableFeatures & (1UL << VirtioBlockFeatures.VIRTIO_BLK_F_RO));
        Assert.Equal(0UL, rig.Device.AvailableFeatures & (1UL << VirtioBlockFeatures.VIRTIO_BLK_F_WRITE_ZEROES));
        Assert.Equal(0UL, rig.Device.AvailableFeatures & (1UL << VirtioBlockFeatures.VIRTIO_BLK_F_DISCARD));
        rig.Memory.At(Data, 512).Fill(0x11);

        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_IOERR, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_OUT, 0, (Data, 512, false)).Status);
        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_UNSUPP, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_WRITE_ZEROES, 0, RangeAt(rig, 0, 0, 8, 0)).Status);
        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_UNSUPP, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_DISCARD, 0, RangeAt(rig, 1, 0, 8, 0)).Status);
        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_OK, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_FLUSH, 0).Status);
        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_OK, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_IN, 0, (Data, 512, true)).Status);
        Assert.Equal(image.Original, image.Contents);
    }

    [HolePunchFact]
    public void Discard_punches_a_hole_that_reads_back_as_zeros_where_the_filesystem_supports_it()
    {
        using var image = new TempImage(Sectors);
        using var rig = new BlockRig(image);
        Assert.NotEqual(0UL, rig.Device.AvailableFeatures & (1UL << VirtioBlockFeatures.VIRTIO_BLK_F_DISCARD));
        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_OK, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_DISCARD, 0, RangeAt(rig, 0, 8, 16, 0)).Status);
        var contents = image.Contents;
        Assert.False(contents.AsSpan(8 * 512, 16 * 512).ContainsAnyExcept((byte)0));
        Assert.Equal(image.Original.AsSpan(0, 8 * 512).ToArray(), contents.AsSpan(0, 8 * 512).ToArray());
        Assert.Equal(image.Original.AsSpan(24 * 512).ToArray(), contents.AsSpan(24 * 512).ToArray());
        Assert.Equal(image.Original.Length, contents.Length);
        // UNMAP is not a discard flag; out of range is an I/O error.
        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_UNSUPP, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_DISCARD, 0, RangeAt(rig, 1, 0, 8, 1)).Status);
        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_IOERR, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_DISCARD, 0, RangeAt(rig, 2, Sectors - 4, 8, 0)).Status);
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(1u)] // UNMAP allowed
    public void Write_zeroes_zeros_the_ranges_and_nothing_else(uint flags)
    {
        using var image = new TempImage(Sectors);
        using var rig = new BlockRig(image);
        Assert.NotEqual(0UL, rig.Device.AvailableFeatures & (1UL << VirtioBlockFeatures.VIRTIO_BLK_F_WRITE_ZEROES));

        // Two ranges in one request.
        ulong ranges = RangeAt(rig, 0, 2, 3, flags).Address;
        RangeAt(rig, 1, 40, 9, flags);
        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_OK, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_WRITE_ZEROES, 0, (ranges, 32, false)).Status);

        var expected = (byte[])image.Original.Clone();
        expected.AsSpan(2 * 512, 3 * 512).Clear();
        expected.AsSpan(40 * 512, 9 * 512).Clear();
        Assert.Equal(expected, image.Contents);
    }

    [Fact]
    public void Config_space_reports_capacity_seg_max_block_size_and_writeback()
    {
        using var image = new TempImage(Sectors);
        using var rig = new BlockRig(image);
        var config = new byte[VirtioBlock.ConfigSize];
        rig.Device.ReadConfig(0, config);
        Assert.Equal((ulong)Sectors, BinaryPrimitives.ReadUInt64LittleEndian(config));
        Assert.Equal(62u, BinaryPrimitives.ReadUInt32LittleEndian(config.AsSpan(12)));
        Assert.Equal(512u, BinaryPrimitives.ReadUInt32LittleEndian(config.AsSpan(20)));
        Assert.Equal(1, config[32]);

        rig.Device.WriteConfig(32, [0]);
        rig.Device.ReadConfig(32, config.AsSpan(0, 1));
        Assert.Equal(0, config[0]);

        // Beyond the end reads as zero; the capacity alone can be read at an offset.
        var tail = new byte[8];
        tail.AsSpan().Fill(0xFF);
        rig.Device.ReadConfig((uint)VirtioBlock.ConfigSize - 4, tail);
        Assert.False(tail.AsSpan(4).ContainsAnyExcept((byte)0));
        var capacity = new byte[4];
        rig.Device.ReadConfig(0, capacity);
        Assert.Equal((uint)Sectors, BinaryPrimitives.ReadUInt32LittleEndian(capacity));
    }

    [Fact]
    public void Requests_through_an_indirect_table_are_served()
    {
        using var image = new TempImage(Sectors);
        using var rig = new BlockRig(image);
        ulong header = rig.Header(0, VirtioBlockRequestType.VIRTIO_BLK_T_IN, 5);
        rig.Driver.AddIndirectChain(0x30000, (header, 16, false), (Data, 512, true), (rig.Status(0), 1, true));
        rig.Device.QueueNotify(0);
        rig.WaitForUsed(1);
        Assert.Equal(0, rig.Memory.At(rig.Status(0), 1)[0]);
        Assert.Equal(image.Original.AsSpan(5 * 512, 512).ToArray(), rig.Memory.At(Data, 512).ToArray());
    }

    [Fact]
    public void Many_requests_in_flight_all_complete_with_their_own_data()
    {
        using var image = new TempImage(Sectors);
        using var rig = new BlockRig(image, queueSize: 64);
        const int count = 21; // 3 descriptors each: as many as the 64-entry table holds
        for (int i = 0; i < count; i++)
        {
            ulong header = rig.Header(i, VirtioBlockRequestType.VIRTIO_BLK_T_IN, (ulong)i);
            rig.Driver.AddChain((header, 16, false), (Data + (ulong)i * 4096, 512, true), (rig.Status(i), 1, true));
        }

        rig.Device.QueueNotify(0);
        rig.WaitForUsed(count);
        var heads = new HashSet<uint>();
        for (int i = 0; i < count; i++)
        {
            heads.Add(rig.Driver.UsedElement((ushort)i).Id);
            Assert.Equal(0, rig.Memory.At(rig.Status(i), 1)[0]);
            Assert.Equal(image.Original.AsSpan(i * 512, 512).ToArray(), rig.Memory.At(Data + (ulong)i * 4096, 512).ToArray());
        }

        Assert.Equal(count, heads.Count);
        Assert.Equal(0, rig.Device.InFlight);
    }

    [Fact]
    public void A_request_without_a_status_byte_makes_the_device_need_a_reset()
    {
        using var image = new TempImage(Sectors);
        using var rig = new BlockRig(image);
        ulong header = rig.Header(0, VirtioBlockRequestType.VIRTIO_BLK_T_FLUSH, 0);
        rig.Driver.AddChain((header, 16, false));
        rig.Device.QueueNotify(0);
        SpinWait.SpinUntil(() => rig.Transport.NeedsReset, BlockRig.CompletionTimeout);
        Assert.Contains("status", rig.Transport.Reasons.Single());
        Assert.Equal(0, rig.Driver.UsedIdx);
    }

    [Fact]
    public void A_read_into_read_only_guest_memory_needs_a_reset_and_writes_nothing()
    {
        using var image = new TempImage(Sectors);
        using var rig = new BlockRig(image);
        rig.Memory.ReadOnlyRange = (Data, Data + 0x1000);
        rig.Memory.At(Data, 512).Fill(0x77);
        ulong header = rig.Header(0, VirtioBlockRequestType.VIRTIO_BLK_T_IN, 0);
        rig.Driver.AddChain((header, 16, false), (Data, 512, true), (rig.Status(0), 1, true));
        rig.Device.QueueNotify(0);
        SpinWait.SpinUntil(() => rig.Transport.NeedsReset, BlockRig.CompletionTimeout);
        Assert.Single(rig.Transport.Reasons);
        Assert.False(rig.Memory.At(Data, 512).ContainsAnyExcept((byte)0x77));
        Assert.True(rig.Memory.GuardsIntact());
    }

    [Fact]
    public void A_hostile_chain_makes_the_device_need_a_reset_once()
    {
        using var image = new TempImage(Sectors);
        using var rig = new BlockRig(image);
        rig.Driver.WriteDescriptor(0, 0x10000, 16, VringFlags.VRING_DESC_F_NEXT, 0);
        rig.Driver.Publish(0);
        rig.Device.QueueNotify(0);
        rig.Device.QueueNotify(0);
        Assert.Single(rig.Transport.Reasons);
        Assert.Contains("DescriptorLoop", rig.Transport.Reasons.Single());
        var logged = Assert.Single(rig.Logger.Entries, e => e.EventId == 2);
        Assert.Contains("DescriptorLoop", logged.Message);
    }

    [Fact]
    public void Reset_waits_for_in_flight_requests_and_the_device_can_be_activated_again()
    {
        using var image = new TempImage(Sectors);
        using var rig = new BlockRig(image, queueSize: 64);
        for (int i = 0; i < 21; i++)
        {
            ulong header = rig.Header(i, VirtioBlockRequestType.VIRTIO_BLK_T_OUT, (ulong)i);
            rig.Driver.AddChain((header, 16, false), (Data + (ulong)i * 512, 512, false), (rig.Status(i), 1, true));
        }

        rig.Device.QueueNotify(0);
        rig.Device.Reset();
        Assert.Equal(0, rig.Device.InFlight);
        int writes = rig.Memory.WriteCount;
        Thread.Sleep(50);
        Assert.Equal(writes, rig.Memory.WriteCount); // nothing touches guest memory after Reset returns

        // The driver re-initialises the rings and activates again.
        rig.Memory.Ram.Clear();
        rig.Activate(rig.Device.AvailableFeatures);
        Assert.Equal(VirtioBlockStatus.VIRTIO_BLK_S_OK, rig.Run(VirtioBlockRequestType.VIRTIO_BLK_T_IN, 1, (Data, 512, true)).Status);
    }

    private static (ulong Address, uint Length, bool Writable) RangeAt(BlockRig rig, int index, ulong sector, uint sectors, uint flags)
    {
        ulong at = 0x60000 + (ulong)index * 16;
        var range = rig.Memory.At(at, 16);
        BinaryPrimitives.WriteUInt64LittleEndian(range, sector);
        BinaryPrimitives.WriteUInt32LittleEndian(range[8..], sectors);
        BinaryPrimitives.WriteUInt32LittleEndian(range[12..], flags);
        return (at, 16, false);
    }
}
