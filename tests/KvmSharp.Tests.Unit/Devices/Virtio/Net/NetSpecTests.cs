using KvmSharp.Devices.Virtio.Net;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio.Net;

public sealed class NetSpecTests
{
    [Fact]
    public void Parses_tap_mac_and_id()
    {
        Assert.True(NetSpec.TryParse("tap=tap0,mac=52:54:00:12:34:56,id=net0", out var spec, out _));
        Assert.Equal("tap0", spec!.Tap);
        Assert.Equal("52:54:00:12:34:56", spec.Mac.ToString());
        Assert.Equal("net0", spec.DisplayName);
        Assert.Equal(spec.Mac, spec.EffectiveMac);
    }

    [Theory]
    [InlineData("", "empty value")]
    [InlineData("mac=02:00:00:00:00:01", "tap= is missing")]
    [InlineData("tap=", "not an interface name")]
    [InlineData("tap=a/b", "not an interface name")]
    [InlineData("tap=abcdefghijklmnop", "not an interface name")]
    [InlineData("tap=t,mac=01:00:00:00:00:01", "multicast")]
    [InlineData("tap=t,mac=00:00:00:00:00:00", "multicast or zero")]
    [InlineData("tap=t,mac=zz:00:00:00:00:01", "not a MAC")]
    [InlineData("tap=t,mac=02:00:00:00:01", "not a MAC")]
    [InlineData("tap=t,tap=u", "given twice")]
    [InlineData("tap=t,queues=2", "unknown key 'queues'")]
    [InlineData("tap=t,,id=x", "empty item")]
    [InlineData("tap0", "not KEY=VALUE")]
    public void Bad_values_are_refused_with_the_reason(string text, string reason)
    {
        Assert.False(NetSpec.TryParse(text, out var spec, out string? error));
        Assert.Null(spec);
        Assert.Contains(reason, error);
        Assert.StartsWith("--net: ", error);
    }

    [Fact]
    public void The_default_mac_is_stable_unicast_locally_administered_and_differs_per_id_and_host()
    {
        var a = MacAddress.Default("vm-a", machineId: "host1");
        Assert.Equal(a, MacAddress.Default("vm-a", machineId: "host1"));
        Assert.False(a.IsMulticast);
        Assert.True(a.IsLocallyAdministered);
        Assert.NotEqual(a, MacAddress.Default("vm-b", machineId: "host1"));
        Assert.NotEqual(a, MacAddress.Default("vm-a", machineId: "host2"));
        var macs = Enumerable.Range(0, 2000).Select(i => MacAddress.Default($"tap{i}", "host1")).ToList();
        Assert.Equal(macs.Count, macs.Distinct().Count());
        Assert.All(macs, m => Assert.True(m.IsLocallyAdministered && !m.IsMulticast));
        Assert.True(NetSpec.TryParse("tap=tap7,id=web", out var spec, out _));
        Assert.Equal(MacAddress.Default("web"), spec!.EffectiveMac);
    }

    [Fact]
    public void Mac_addresses_round_trip_through_text()
    {
        Assert.True(MacAddress.TryParse("02-AB-cd-00-ff-10", out var mac));
        Assert.Equal("02:ab:cd:00:ff:10", mac.ToString());
        Span<byte> bytes = stackalloc byte[6];
        mac.CopyTo(bytes);
        Assert.Equal(new byte[] { 0x02, 0xab, 0xcd, 0x00, 0xff, 0x10 }, bytes.ToArray());
    }
}
