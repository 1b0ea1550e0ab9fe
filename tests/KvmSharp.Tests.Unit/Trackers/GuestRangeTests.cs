using KvmSharp.Vmm.Trackers;
using Xunit;

namespace KvmSharp.Tests.Unit.Trackers;

public sealed class GuestRangeTests
{
    [Theory]
    [InlineData("0x180000-0x188000", 0x180000UL, 0x188000UL)]
    [InlineData("0x180000+32K", 0x180000UL, 0x188000UL)]
    [InlineData("1572864+4096", 0x180000UL, 0x181000UL)]
    [InlineData("0x180123", 0x180000UL, 0x181000UL)]
    [InlineData(" 0x1000-0x1001 ", 0x1000UL, 0x1001UL)]
    public void Parses_the_three_forms(string text, ulong start, ulong end)
    {
        var range = GuestRange.Parse(text);
        Assert.Equal(start, range.Start);
        Assert.Equal(end, range.End);
    }

    [Fact]
    public void Pages_cover_a_partial_range_and_lists_split_on_commas()
    {
        var ranges = GuestRange.ParseList("0x1800-0x2001,0x5000");
        Assert.Equal(2, ranges.Count);
        Assert.Equal(1UL, ranges[0].FirstGfn);
        Assert.Equal(3UL, ranges[0].EndGfn);
        Assert.True(ranges[1].Contains(0x5FFF));
        Assert.False(ranges[1].Contains(0x6000));
    }

    [Theory]
    [InlineData("0x2000-0x1000", "above the start")]
    [InlineData("zz", "is not an address")]
    [InlineData("0x1000+0", "non-zero")]
    [InlineData("0xffffffffffffffff+2", "not wrap")]
    public void Bad_ranges_say_what_is_wrong(string text, string expected)
    {
        var error = Assert.Throws<FormatException>(() => GuestRange.Parse(text));
        Assert.Contains(expected, error.Message);
    }
}
