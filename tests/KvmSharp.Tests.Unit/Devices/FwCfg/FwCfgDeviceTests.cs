using System.Buffers.Binary;
using KvmSharp.Devices.Bus;
using KvmSharp.Devices.FwCfg;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.FwCfg;

/// <summary>The fw_cfg ports as a guest driver uses them: a 16-bit select at 0x510, byte reads at 0x511.</summary>
public sealed class FwCfgDeviceTests
{
    private readonly DeviceBus _pio = new("pio");

    public FwCfgDeviceTests() => Attach(FwCfgDevice.ForMachine(cpus: 3, memoryBytes: 96UL << 20));

    private void Attach(FwCfgDevice device) => _pio.Register(FwCfgDevice.SelectorPort, FwCfgDevice.PortCount, device, "fw_cfg");

    private byte[] ReadItem(ushort key, int length)
    {
        Span<byte> selector = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(selector, key);
        Assert.True(_pio.Write(FwCfgDevice.SelectorPort, selector));
        var bytes = new byte[length];
        Span<byte> one = stackalloc byte[1];
        for (int i = 0; i < length; i++)
        {
            Assert.True(_pio.Read(FwCfgDevice.DataPort, one));
            bytes[i] = one[0];
        }
        return bytes;
    }

    [Fact]
    public void Signature_id_cpu_count_and_ram_size_read_as_qemu_gives_them()
    {
        Assert.Equal("QEMU"u8.ToArray(), ReadItem(FwCfgKeys.FW_CFG_SIGNATURE, 4));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(ReadItem(FwCfgKeys.FW_CFG_ID, 4)));
        Assert.Equal((ushort)3, BinaryPrimitives.ReadUInt16LittleEndian(ReadItem(FwCfgKeys.FW_CFG_NB_CPUS, 2)));
        Assert.Equal((ushort)3, BinaryPrimitives.ReadUInt16LittleEndian(ReadItem(FwCfgKeys.FW_CFG_MAX_CPUS, 2)));
        Assert.Equal(96UL << 20, BinaryPrimitives.ReadUInt64LittleEndian(ReadItem(FwCfgKeys.FW_CFG_RAM_SIZE, 8)));
    }

    [Fact]
    public void The_file_directory_is_empty_by_default_and_lists_files_big_endian()
    {
        Assert.Equal(new byte[4], ReadItem(FwCfgKeys.FW_CFG_FILE_DIR, 4));

        var pio = new DeviceBus("pio");
        var device = new FwCfgDevice(new Dictionary<ushort, byte[]>(), [new FwCfgFile("etc/test", [1, 2, 3])]);
        pio.Register(FwCfgDevice.SelectorPort, FwCfgDevice.PortCount, device, "fw_cfg");
        device.Write(0, [0x19, 0x00]);
        var directory = new byte[4 + 64];
        device.Read(1, directory);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32BigEndian(directory));
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32BigEndian(directory.AsSpan(4)));
        ushort selector = BinaryPrimitives.ReadUInt16BigEndian(directory.AsSpan(8));
        Assert.Equal(FwCfgKeys.FW_CFG_FILE_FIRST, selector);
        Assert.Equal("etc/test\0"u8.ToArray(), directory.AsSpan(12, 9).ToArray());
        BinaryPrimitives.WriteUInt16LittleEndian(directory, selector);
        device.Write(0, directory.AsSpan(0, 2));
        var contents = new byte[5];
        device.Read(1, contents);
        Assert.Equal(new byte[] { 1, 2, 3, 0, 0 }, contents);
    }

    [Fact]
    public void Reading_past_an_item_or_an_unknown_key_gives_zeros_and_selecting_again_rewinds()
    {
        Assert.Equal("QEMU\0\0"u8.ToArray(), ReadItem(FwCfgKeys.FW_CFG_SIGNATURE, 6));
        Assert.Equal(new byte[4], ReadItem(0x7777, 4));
        Assert.Equal("QE"u8.ToArray(), ReadItem(FwCfgKeys.FW_CFG_SIGNATURE, 2));
        Assert.Equal("QE"u8.ToArray(), ReadItem(FwCfgKeys.FW_CFG_SIGNATURE, 2));
    }

    [Fact]
    public void Byte_writes_are_ignored_and_the_state_round_trips()
    {
        var device = FwCfgDevice.ForMachine(1, 1UL << 20);
        device.Write(0, [0x05, 0x00]);
        device.Write(1, [0xAA]);       // a data write: ignored
        device.Write(0, [0x01]);       // a byte at the selector is a data write too
        Span<byte> first = stackalloc byte[1];
        device.Read(1, first);
        Assert.Equal(1, first[0]);
        Assert.Equal(new FwCfgState(FwCfgKeys.FW_CFG_NB_CPUS, 1), device.State);

        var copy = FwCfgDevice.ForMachine(1, 1UL << 20);
        copy.Restore(device.State);
        Span<byte> next = stackalloc byte[1];
        copy.Read(1, next);
        Assert.Equal(0, next[0]);
        Assert.Equal(new FwCfgState(FwCfgKeys.FW_CFG_NB_CPUS, 2), copy.State);
    }

    [Fact]
    public void A_file_name_too_long_for_the_directory_is_refused()
    {
        var e = Assert.Throws<ArgumentException>(() => new FwCfgDevice(new Dictionary<ushort, byte[]>(), [new FwCfgFile(new string('n', 56), [1])]));
        Assert.Contains("1 to 55 characters", e.Message);
    }
}
