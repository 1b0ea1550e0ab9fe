using KvmSharp.Memory.Regions;
using Xunit;

namespace KvmSharp.Tests.Unit.Memory;

public sealed class GuestMemoryRegionTests
{
    [Theory]
    [InlineData(2UL << 20)]
    [InlineData(6UL << 20)]
    [InlineData((4UL << 20) + 4096)]
    public void Anonymous_regions_of_a_huge_page_or_more_start_on_a_huge_page_boundary(ulong size)
    {
        using var region = GuestMemoryRegion.CreateAnonymous(size, "thp-test");
        Assert.Equal(0UL, region.HostAddress % GuestMemoryRegion.HugePageSize);
        // The whole range is usable, first and last byte included (the trimmed reservation kept it all).
        region.Write(0, [0xA5]);
        region.Write(size - 1, [0x5A]);
        Assert.Equal(0xA5, region.AsSpan(0, 1)[0]);
        Assert.Equal(0x5A, region.AsSpan(size - 1, 1)[0]);
    }

    [Fact]
    public void Small_anonymous_regions_still_work()
    {
        using var region = GuestMemoryRegion.CreateAnonymous(8192, "small");
        Assert.Equal(0UL, region.HostAddress % GuestMemoryRegion.PageSize);
        region.Write(8191, [7]);
        Assert.Equal(7, region.AsSpan(8191, 1)[0]);
        Assert.Equal(0, region.AsSpan(0, 1)[0]);
    }
}
