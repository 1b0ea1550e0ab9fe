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
    [InlineData("17179869184G", "'17179869184G' is beyond the 64-bit address space")]
    [InlineData("0x1000+17179869184G", "'17179869184G' is beyond the 64-bit address space")]
    [InlineData("0x1000-18014398509481984K", "'18014398509481984K' is beyond the 64-bit address space")]
    [InlineData("0xfffffffffffff123", "ends beyond the 64-bit address space")]
    public void Bad_ranges_say_what_is_wrong(string text, string expected)
    {
        var error = Assert.Throws<FormatException>(() => GuestRange.Parse(text));
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void The_largest_sizes_that_fit_are_still_accepted()
    {
        // 17179869183G = 2^64 - 1 GiB: the last multiple of a GiB below the top, so no wrap.
        Assert.Equal(0x3FFFFFFFFUL << 30, GuestRange.Parse("0+17179869183G").End);
        Assert.Equal(0xFFFFFFFFFFFFF000UL, GuestRange.Parse("0xffffffffffffe000").End);
        Assert.Equal(0x10_0000_0000_0000UL, new GuestRange(0, ulong.MaxValue).EndGfn);
    }
}
