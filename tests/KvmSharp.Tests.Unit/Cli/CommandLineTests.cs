using KvmSharp.Cli;
using Xunit;

namespace KvmSharp.Tests.Unit.Cli;

/// <summary>CommandLine.Parse: verbs, value flags, switches, --flag=value, and errors that name the culprit.</summary>
public sealed class CommandLineTests
{
    private static CommandLine Parse(params string[] args) => CommandLine.Parse(args);

    [Fact]
    public void No_arguments_means_run_with_no_settings()
    {
        var line = Parse();

        Assert.Equal("run", line.Verb);
        Assert.Empty(line.Settings);
    }

    [Theory]
    [InlineData("run", "run")]
    [InlineData("caps", "caps")]
    [InlineData("help", "help")]
    [InlineData("-h", "help")]
    [InlineData("--help", "help")]
    public void Verb_is_the_first_argument(string arg, string verb)
    {
        Assert.Equal(verb, Parse(arg).Verb);
    }

    [Theory]
    [InlineData("--memory", "Memory", "128M")]
    [InlineData("--cpus", "Cpus", "4")]
    [InlineData("--image", "Image", "/tmp/guest.bin")]
    [InlineData("--entry", "Entry", "0x100000")]
    [InlineData("--mode", "Mode", "real")]
    [InlineData("--kvm-device", "KvmDevice", "/dev/kvm")]
    [InlineData("--serial", "Serial", "/tmp/console.log")]
    public void Value_flag_becomes_a_setting_under_the_section(string flag, string key, string value)
    {
        var line = Parse("run", flag, value);

        Assert.Equal("run", line.Verb);
        var setting = Assert.Single(line.Settings);
        Assert.Equal($"{RunOptions.Section}:{key}", setting.Key);
        Assert.Equal(value, setting.Value);
    }

    [Fact]
    public void Flag_equals_value_is_the_same_as_two_arguments()
    {
        Assert.Equal(Parse("run", "--memory", "256M").Settings, Parse("run", "--memory=256M").Settings);
        Assert.Equal("256M", Parse("run", "--memory=256M").Settings["KvmSharp:Memory"]);
    }

    [Fact]
    public void Flag_equals_value_splits_at_the_first_equals_sign()
    {
        var line = Parse("run", "--image=/tmp/a=b.bin");

        Assert.Equal("/tmp/a=b.bin", line.Settings["KvmSharp:Image"]);
    }

    [Fact]
    public void Value_may_look_like_a_flag_when_given_with_equals()
    {
        Assert.Equal("--odd", Parse("run", "--serial=--odd").Settings["KvmSharp:Serial"]);
    }

    [Fact]
    public void Switch_is_true_without_a_value_and_takes_one_with_equals()
    {
        Assert.Equal("true", Parse("run", "--memfd").Settings["KvmSharp:Memfd"]);
        Assert.Equal("false", Parse("run", "--memfd=false").Settings["KvmSharp:Memfd"]);
    }

    [Fact]
    public void Switch_does_not_swallow_the_next_argument()
    {
        var line = Parse("run", "--memfd", "--cpus", "2");

        Assert.Equal("true", line.Settings["KvmSharp:Memfd"]);
        Assert.Equal("2", line.Settings["KvmSharp:Cpus"]);
    }

    [Fact]
    public void Several_flags_combine_and_the_last_repeat_wins()
    {
        var line = Parse("run", "--cpus", "1", "--memory=1G", "--memfd", "--cpus", "8");

        Assert.Equal(3, line.Settings.Count);
        Assert.Equal("8", line.Settings["KvmSharp:Cpus"]);
        Assert.Equal("1G", line.Settings["KvmSharp:Memory"]);
    }

    [Fact]
    public void Setting_keys_are_case_insensitive_like_configuration_keys()
    {
        Assert.Equal("2", Parse("run", "--cpus", "2").Settings["kvmsharp:cpus"]);
    }

    [Fact]
    public void Caps_takes_the_kvm_device_flag()
    {
        var line = Parse("caps", "--kvm-device", "/dev/kvm2");

        Assert.Equal("caps", line.Verb);
        Assert.Equal("/dev/kvm2", line.Settings["KvmSharp:KvmDevice"]);
    }

    [Theory]
    [InlineData("-h")]
    [InlineData("--help")]
    public void Help_flag_after_the_verb_turns_into_help(string flag)
    {
        Assert.Equal("help", Parse("run", "--cpus", "2", flag).Verb);
    }

    [Theory]
    [InlineData("start")]
    [InlineData("RUN")]
    [InlineData("")]
    public void Unknown_verb_is_an_error_naming_it_and_the_verbs(string verb)
    {
        var e = Assert.Throws<ArgumentException>(() => Parse(verb, "--cpus", "2"));

        Assert.Contains($"'{verb}'", e.Message, StringComparison.Ordinal);
        Assert.Contains("run, caps, help", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--bogus")]
    [InlineData("--bogus=1")]
    [InlineData("-m")]
    [InlineData("--Memory")]
    [InlineData("stray")]
    public void Unknown_option_is_an_error_naming_it(string option)
    {
        var e = Assert.Throws<ArgumentException>(() => Parse("run", "--cpus", "2", option));

        Assert.Contains($"'{option}'", e.Message, StringComparison.Ordinal);
        Assert.Contains("'run'", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--memory")]
    [InlineData("--cpus")]
    [InlineData("--image")]
    [InlineData("--entry")]
    [InlineData("--mode")]
    [InlineData("--kvm-device")]
    [InlineData("--serial")]
    public void Value_flag_at_the_end_is_an_error_naming_it(string flag)
    {
        var e = Assert.Throws<ArgumentException>(() => Parse("run", "--memfd", flag));

        Assert.Contains(flag, e.Message, StringComparison.Ordinal);
        Assert.Contains("needs a value", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_verb_may_be_left_out_before_flags()
    {
        var parsed = CommandLine.Parse(["--memory", "128M", "--cpus", "2"]);
        Assert.Equal("run", parsed.Verb);
        Assert.Equal("128M", parsed.Settings["KvmSharp:Memory"]);
        Assert.Equal("2", parsed.Settings["KvmSharp:Cpus"]);
    }

    [Fact]
    public void A_value_flag_followed_by_another_flag_is_missing_its_value()
    {
        var error = Assert.Throws<ArgumentException>(() => CommandLine.Parse(["run", "--memory", "--cpus", "2"]));
        Assert.Contains("--memory needs a value", error.Message);
    }
}
