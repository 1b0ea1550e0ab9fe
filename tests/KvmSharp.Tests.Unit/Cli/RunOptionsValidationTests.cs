using KvmSharp.Cli;
using KvmSharp.Vmm.Boot;
using Xunit;

namespace KvmSharp.Tests.Unit.Cli;

/// <summary>RunOptions.Validate: checked values out, or an OptionsException naming the bad setting and its value.</summary>
public sealed class RunOptionsValidationTests : IDisposable
{
    private readonly string _image = Path.Combine(Path.GetTempPath(), $"kvmsharp-unit-{Guid.NewGuid():N}.bin");

    public RunOptionsValidationTests() => File.WriteAllBytes(_image, [0xf4]);

    public void Dispose() => File.Delete(_image);

    private static OptionsException Refused(RunOptions options) => Assert.Throws<OptionsException>(() => options.Validate());

    private static void AssertNames(string setting, string value, OptionsException e)
    {
        Assert.StartsWith($"invalid setting {setting} (--{setting}, ", e.Message, StringComparison.Ordinal);
        Assert.Contains($"KVMSHARP__{setting.ToUpperInvariant()}", e.Message, StringComparison.Ordinal);
        Assert.Contains($"'{value}'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Defaults_are_valid()
    {
        var validated = new RunOptions().Validate();

        Assert.Equal(64UL << 20, validated.MemoryBytes);
        Assert.Equal(1, validated.Cpus);
        Assert.Equal(CpuMode.Long, validated.Mode);
        Assert.Null(validated.Image);
        Assert.Null(validated.Entry);
        Assert.Equal("stdout", validated.Serial);
        Assert.False(validated.Memfd);
    }

    [Theory]
    [InlineData("1M", 1UL << 20)]
    [InlineData("2G", 2UL << 30)]
    [InlineData("1024K", 1UL << 20)]
    [InlineData("3145728", 3UL << 20)]
    public void Memory_in_whole_MiB_is_accepted(string memory, ulong bytes)
    {
        Assert.Equal(bytes, new RunOptions { Memory = memory }.Validate().MemoryBytes);
    }

    [Theory]
    [InlineData("lots")]
    [InlineData("")]
    [InlineData("0")]
    [InlineData("512K")]
    [InlineData("1536K")]
    [InlineData("1048577")]
    public void Bad_memory_names_the_memory_setting(string memory)
    {
        var e = Refused(new RunOptions { Memory = memory });

        AssertNames("memory", memory, e);
        Assert.Contains("KvmSharp:Memory", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(256)]
    [InlineData(int.MaxValue)]
    public void Bad_cpu_count_names_the_cpus_setting(int cpus)
    {
        var e = Refused(new RunOptions { Cpus = cpus });

        AssertNames("cpus", cpus.ToString(), e);
        Assert.Contains("1 to 255", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Highest_cpu_count_is_accepted()
    {
        Assert.Equal(255, new RunOptions { Cpus = 255 }.Validate().Cpus);
    }

    [Theory]
    [InlineData("long", CpuMode.Long)]
    [InlineData("real", CpuMode.Real)]
    [InlineData("REAL", CpuMode.Real)]
    [InlineData("Long", CpuMode.Long)]
    public void Mode_is_case_insensitive(string mode, CpuMode expected)
    {
        Assert.Equal(expected, new RunOptions { Mode = mode }.Validate().Mode);
    }

    [Theory]
    [InlineData("protected")]
    [InlineData("")]
    [InlineData("64")]
    public void Bad_mode_names_the_mode_setting(string mode)
    {
        AssertNames("mode", mode, Refused(new RunOptions { Mode = mode }));
    }

    [Fact]
    public void Missing_image_file_names_the_image_setting_and_the_path()
    {
        string missing = _image + ".missing";

        var e = Refused(new RunOptions { Image = missing, Entry = "0x100000" });

        AssertNames("image", missing, e);
        Assert.Contains("does not exist", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Image_without_entry_names_the_entry_setting()
    {
        var e = Refused(new RunOptions { Image = _image });

        AssertNames("entry", "(missing)", e);
        Assert.Contains("--image needs --entry", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Entry_without_image_names_the_entry_setting()
    {
        var e = Refused(new RunOptions { Entry = "0x100000" });

        AssertNames("entry", "0x100000", e);
        Assert.Contains("--image", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("start")]
    [InlineData("0x")]
    [InlineData("")]
    public void Unparsable_entry_names_the_entry_setting(string entry)
    {
        AssertNames("entry", entry, Refused(new RunOptions { Image = _image, Entry = entry }));
    }

    [Theory]
    [InlineData("0x100000", 0x100000UL)]
    [InlineData("1048576", 0x100000UL)]
    [InlineData("0x7c00", 0x7c00UL)]
    public void Image_with_entry_is_accepted(string entry, ulong address)
    {
        var validated = new RunOptions { Image = _image, Entry = entry, Mode = "real", Memfd = true, Serial = "/tmp/x" }.Validate();

        Assert.Equal(_image, validated.Image);
        Assert.Equal(address, validated.Entry);
        Assert.Equal(CpuMode.Real, validated.Mode);
        Assert.True(validated.Memfd);
        Assert.Equal("/tmp/x", validated.Serial);
    }

    [Fact]
    public void First_bad_setting_is_reported_in_a_fixed_order()
    {
        var e = Refused(new RunOptions { Memory = "lots", Cpus = 0, Mode = "x" });

        AssertNames("memory", "lots", e);
    }
}
