using System.Buffers.Binary;
using KvmSharp.Vmm.Boot.Linux;
using Xunit;

namespace KvmSharp.Tests.Unit.Boot;

public sealed class BzImageTests
{
    [Fact]
    public void A_valid_header_is_read_field_by_field()
    {
        var image = BzImage.Parse(SyntheticBzImage.Create(setupSectors: 27, kernelBytes: 1000), "test");
        Assert.Equal(28 * 512, image.SetupBytes);
        Assert.Equal(63u, image.SysSize);
        Assert.Equal(27, image.SetupSectors);
        Assert.Equal(0x020F, image.ProtocolVersion);
        Assert.Equal("2.15", image.Version);
        Assert.True(image.Relocatable);
        Assert.Equal(0x1000000UL, image.PreferredAddress);
        Assert.Equal(1008, image.ProtectedModeKernel.Length);              // 63 paragraphs
        Assert.Equal(0x268 - 0x1F1, image.SetupHeader.Length);
    }

    [Fact]
    public void Zero_setup_sectors_means_four()
    {
        var file = SyntheticBzImage.Create(setupSectors: 4);
        file[0x1F1] = 0;
        Assert.Equal(4, BzImage.Parse(file, "test").SetupSectors);
    }

    [Theory]
    [InlineData("magic", "no 'HdrS' setup-header magic")]
    [InlineData("old", "boot protocol 2.10; KvmSharp needs 2.12")]
    [InlineData("32bit", "no 64-bit entry point")]
    [InlineData("fixed", "not relocatable")]
    [InlineData("elf", "is an ELF file")]
    [InlineData("short", "too short for a setup header")]
    public void Refusals_say_why(string defect, string expected)
    {
        var file = defect switch
        {
            "old" => SyntheticBzImage.Create(protocol: 0x020A),
            "32bit" => SyntheticBzImage.Create(xloadflags: 0),
            "fixed" => SyntheticBzImage.Create(relocatable: 0),
            "short" => new byte[100],
            _ => SyntheticBzImage.Create(),
        };
        if (defect == "magic") BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x202), 0);
        if (defect == "elf") "\u007fELF"u8.CopyTo(file);
        var error = Assert.Throws<InvalidDataException>(() => BzImage.Parse(file, "vmlinuz-test"));
        Assert.Contains("vmlinuz-test", error.Message);
        Assert.Contains(expected, error.Message);
    }
}
