using KvmSharp.Devices.Virtio.Block;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio;

public sealed class DriveSpecTests
{
    [Fact]
    public void Every_key_parses()
    {
        var spec = DriveSpec.Parse("file=/images/root.img,readonly=on,cache=none,serial=ROOT-01,id=root");
        Assert.Equal(new DriveSpec("/images/root.img", ReadOnly: true, DirectIo: true, Serial: "ROOT-01", Id: "root"), spec);
        Assert.Equal("root", spec.DisplayName);
    }

    [Fact]
    public void Defaults_are_read_write_writeback_without_serial()
    {
        var spec = DriveSpec.Parse("file=disk.img");
        Assert.Equal(new DriveSpec("disk.img"), spec);
        Assert.Equal("disk.img", spec.DisplayName);
        Assert.False(DriveSpec.Parse("file=a,readonly=off,cache=writeback").ReadOnly);
    }

    [Fact]
    public void A_doubled_comma_is_a_comma_in_the_path()
        => Assert.Equal("/a,b.img", DriveSpec.Parse("file=/a,,b.img,readonly=on").Path);

    [Theory]
    [InlineData("", "empty value")]
    [InlineData("readonly=on", "file= is missing")]
    [InlineData("file=", "file= is empty")]
    [InlineData("file=a,readonly=maybe", "readonly=maybe is not valid; give readonly=on or readonly=off")]
    [InlineData("file=a,cache=unsafe", "cache=unsafe is not valid")]
    [InlineData("file=a,serial=123456789012345678901", "at most 20")]
    [InlineData("file=a,serial=", "serial= is empty")]
    [InlineData("file=a,id=has space", "id=has space is not valid")]
    [InlineData("file=a,format=qcow2", "unknown key 'format'")]
    [InlineData("file=a,file=b", "file= is given twice")]
    [InlineData("file=a,x", "'x' is not KEY=VALUE")]
    [InlineData("file=a,,,", "an empty item")]
    [InlineData("disk.img", "'disk.img' is not KEY=VALUE")]
    public void Bad_values_give_one_line_errors_naming_the_problem(string text, string expected)
    {
        Assert.False(DriveSpec.TryParse(text, out var spec, out string? error));
        Assert.Null(spec);
        Assert.Contains(expected, error);
        Assert.StartsWith("--drive: ", error);
        Assert.DoesNotContain('\n', error!);
        var thrown = Assert.Throws<DriveSpecException>(() => DriveSpec.Parse(text));
        Assert.Equal(error, thrown.Message);
    }
}
