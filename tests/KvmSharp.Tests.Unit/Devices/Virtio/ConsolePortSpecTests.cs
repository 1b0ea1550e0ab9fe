using KvmSharp.Devices.Virtio.Console;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio;

public sealed class ConsolePortSpecTests
{
    [Fact]
    public void File_and_socket_ports_parse()
    {
        Assert.Equal(new ConsolePortSpec("org.qemu.guest_agent.0", "/tmp/out.log", null), ConsolePortSpec.Parse("name=org.qemu.guest_agent.0,path=/tmp/out.log"));
        Assert.Equal(new ConsolePortSpec("agent", null, "/run/a,b.sock"), ConsolePortSpec.Parse("socket=/run/a,,b.sock,name=agent"));
    }

    [Theory]
    [InlineData("", "empty value")]
    [InlineData("path=/x", "name= is missing")]
    [InlineData("name=a", "exactly one of path=FILE or socket=PATH")]
    [InlineData("name=a,path=/x,socket=/y", "exactly one of path=FILE or socket=PATH")]
    [InlineData("name=a b,path=/x", "name=a b is not valid")]
    [InlineData("name=a,path=", "path= is empty")]
    [InlineData("name=a,tcp=1", "unknown key 'tcp'")]
    [InlineData("name=a,name=b,path=/x", "name= is given twice")]
    [InlineData("name", "'name' is not KEY=VALUE")]
    public void Bad_values_give_one_line_errors(string text, string expected)
    {
        Assert.False(ConsolePortSpec.TryParse(text, out var spec, out string? error));
        Assert.Null(spec);
        Assert.Contains(expected, error);
        Assert.StartsWith("--port", error);
        Assert.Equal(error, Assert.Throws<ConsolePortSpecException>(() => ConsolePortSpec.Parse(text)).Message);
    }

    [Fact]
    public void A_socket_path_holding_a_regular_file_is_refused_and_the_file_kept()
    {
        using var dir = new TempImage(1);
        var error = Assert.Throws<IOException>(() => new ConsolePortSpec("p", null, dir.Path).Open());
        Assert.Contains("exists and is not a socket", error.Message);
        Assert.Equal(dir.Original, File.ReadAllBytes(dir.Path));
    }
}
