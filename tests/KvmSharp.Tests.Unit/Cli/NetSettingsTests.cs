using KvmSharp.Cli;
using KvmSharp.Tests.Unit.Boot;
using Xunit;

namespace KvmSharp.Tests.Unit.Cli;

/// <summary>--net (repeatable): parsed from the flags and settings files, refused before the VM exists when malformed or when the tap is missing.</summary>
public sealed class NetSettingsTests : IDisposable
{
    private const ulong Host = 16UL << 30;
    private readonly string _directory = Directory.CreateTempSubdirectory("kvmsharp-net-cli-").FullName;
    private readonly string _kernel;

    public NetSettingsTests()
    {
        _kernel = Path.Combine(_directory, "bzImage");
        File.WriteAllBytes(_kernel, SyntheticBzImage.Create());
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static RunOptions Bind(params string[] args)
    {
        var line = new CommandLine().Parse(args);
        Assert.Equal(ParsedVerb.Run, line.Verb);
        return Settings.Load(line.Settings, files: []).BindRunOptions();
    }

    [Fact]
    public void Repeated_nets_are_kept_in_order()
    {
        var options = Bind("run", "--kernel", _kernel, "--net", "tap=kvst-a", "--net", "tap=kvst-b,id=b");
        Assert.Equal(["tap=kvst-a", "tap=kvst-b,id=b"], options.List(RunSetting.Net));
        Assert.Empty(Bind("run", "--kernel", _kernel).List(RunSetting.Net));
    }

    [Theory]
    [InlineData("mac=02:00:00:00:00:01", "tap= is missing")]
    [InlineData("tap=t0,mac=ff:ff:ff:ff:ff:ff", "multicast")]
    [InlineData("tap=t0,vhost=on", "unknown key 'vhost'")]
    [InlineData("tap=a/b", "not an interface name")]
    public void A_malformed_net_is_refused_naming_the_net_setting(string net, string mentioned)
    {
        var e = Assert.Throws<OptionsException>(() => Bind("run", "--kernel", _kernel, "--net", net).Validate(Host));
        Assert.Equal("net", e.Setting!.Name);
        Assert.Contains(mentioned, e.Message);
        Assert.DoesNotContain("--net: --net", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void A_missing_tap_is_refused_before_the_vm_exists_with_how_to_create_it()
    {
        const string Tap = "kvsnosuch0";
        Assert.False(Directory.Exists($"/sys/class/net/{Tap}"));
        var e = Assert.Throws<OptionsException>(() => Bind("run", "--kernel", _kernel, "--net", $"tap={Tap}").Validate(Host));
        Assert.Equal("net", e.Setting!.Name);
        Assert.Contains($"ip tuntap add dev {Tap} mode tap", e.Message);
    }

    [Fact]
    public void Net_needs_a_linux_guest()
    {
        var e = Assert.Throws<OptionsException>(() => Bind("run", "--net", "tap=tap0").Validate(Host));
        Assert.Contains("only applies with --kernel", e.Message);
    }
}
