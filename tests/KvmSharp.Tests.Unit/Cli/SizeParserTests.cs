using KvmSharp.Cli;
using Xunit;

namespace KvmSharp.Tests.Unit.Cli;

/// <summary>SizeParser: sizes with K/M/G/T suffixes (optionally followed by B), plain byte counts, and addresses.</summary>
public sealed class SizeParserTests
{
    [Theory]
    [InlineData("64M", 64UL << 20)]
    [InlineData("1G", 1UL << 30)]
    [InlineData("512K", 512UL << 10)]
    [InlineData("2T", 2UL << 40)]
    [InlineData("64MB", 64UL << 20)]
    [InlineData("64mb", 64UL << 20)]
    [InlineData("1g", 1UL << 30)]
    [InlineData("4KB", 4096UL)]
    [InlineData("4096", 4096UL)]
    [InlineData("0", 0UL)]
    [InlineData("0M", 0UL)]
    [InlineData(" 2G ", 2UL << 30)]
    [InlineData("18446744073709551615", ulong.MaxValue)]
    [InlineData("16777215T", 16777215UL << 40)]
    public void Valid_size_parses_to_bytes(string text, ulong bytes)
    {
        Assert.True(SizeParser.TryParse(text, out ulong parsed));
        Assert.Equal(bytes, parsed);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("M")]
    [InlineData("MB")]
    [InlineData("B")]
    [InlineData("64X")]
    [InlineData("64MBB")]
    [InlineData("64 M")]
    [InlineData("-1")]
    [InlineData("+64M")]
    [InlineData("1.5G")]
    [InlineData("1,024")]
    [InlineData("0x10M")]
    [InlineData("lots")]
    [InlineData("M64")]
    public void Junk_is_refused(string? text)
    {
        Assert.False(SizeParser.TryParse(text, out ulong parsed));
        Assert.Equal(0UL, parsed);
    }

    [Theory]
    [InlineData("18446744073709551616")] // 2^64 bytes
    [InlineData("16777216T")]            // 2^24 TiB = 2^64 bytes
    [InlineData("17179869184G")]         // 2^34 GiB = 2^64 bytes
    [InlineData("99999999999999999999K")]
    public void Overflow_is_refused(string text)
    {
        Assert.False(SizeParser.TryParse(text, out ulong parsed));
        Assert.Equal(0UL, parsed);
    }

    [Theory]
    [InlineData("0x100000", 0x100000UL)]
    [InlineData("0X7c00", 0x7c00UL)]
    [InlineData("1048576", 0x100000UL)]
    [InlineData(" 0xffffffffffffffff ", ulong.MaxValue)]
    public void Address_parses_as_hex_with_0x_or_decimal_without(string text, ulong address)
    {
        Assert.True(SizeParser.TryParseAddress(text, out ulong parsed));
        Assert.Equal(address, parsed);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("0x")]
    [InlineData("0xzz")]
    [InlineData("100000h")]
    [InlineData("ff")]
    [InlineData("-1")]
    [InlineData("0x1_0000")]
    [InlineData("0x10000000000000000")]
    public void Junk_address_is_refused(string? text)
    {
        Assert.False(SizeParser.TryParseAddress(text, out _));
    }
}
