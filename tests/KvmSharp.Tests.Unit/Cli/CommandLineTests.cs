using KvmSharp.Cli;
using Xunit;

namespace KvmSharp.Tests.Unit.Cli;

/// <summary>CommandLine.Parse: verbs, value flags, switches, --flag=value, and errors that name the culprit.</summary>
public sealed class CommandLineTests
{
    private static ParsedCommandLine Parse(params string[] args) => new CommandLine().Parse(args);

    [Fact]
    public void No_arguments_means_run_with_no_settings()
    {
        var line = Parse();

        Assert.Equal(ParsedVerb.Run, line.Verb);
        Assert.Empty(line.Settings);
    }

    [Theory]
    [InlineData("run", ParsedVerb.Run)]
    [InlineData("caps", ParsedVerb.Caps)]
    [InlineData("help", ParsedVerb.Help)]
    public void Verb_is_the_first_argument(string arg, ParsedVerb verb)
    {
        Assert.Equal(verb, Parse(arg).Verb);
    }

    [Theory]
    [InlineData("-h")]
    [InlineData("--help")]
    [InlineData("--version")]
    [InlineData("[suggest]")]
    public void Help_version_and_completion_are_system_commandlines_own_actions(string arg)
    {
        Assert.Equal(ParsedVerb.BuiltIn, Parse(arg).Verb);
    }

    [Theory]
    [InlineData("-h")]
    [InlineData("--help")]
    public void Help_flag_after_the_verb_is_help(string flag)
    {
        Assert.Equal(ParsedVerb.BuiltIn, Parse("run", "--cpus", "2", flag).Verb);
    }

    [Theory]
    [InlineData("--memory", "Memory", "128M")]
    [InlineData("--cpus", "Cpus", "4")]
    [InlineData("--image", "Image", "/tmp/guest.bin")]
    [InlineData("--entry", "Entry", "0x100000")]
    [InlineData("--mode", "Mode", "real")]
    [InlineData("--kvm-device", "KvmDevice", "/dev/kvm")]
    [InlineData("--serial", "Serial", "/tmp/console.log")]
    [InlineData("--track", "Track", "0x1000-0x2000")]
    [InlineData("--kernel", "Kernel", "/boot/vmlinuz")]
    [InlineData("--initrd", "Initrd", "/boot/initrd")]
    [InlineData("--cmdline", "Cmdline", "console=ttyS0")]
    [InlineData("--expect", "Expect", "login:")]
    [InlineData("--timeout", "Timeout", "1.5")]
    [InlineData("--on-reboot", "OnReboot", "restart")]
    public void Value_flag_becomes_a_setting_under_the_section(string flag, string key, string value)
    {
        var line = Parse("run", flag, value);

        Assert.Equal(ParsedVerb.Run, line.Verb);
        var setting = Assert.Single(line.Settings);
        Assert.Equal($"{RunOptions.Section}:{key}", setting.Key);
        Assert.Equal(value, setting.Value);
    }

    [Fact]
    public void Every_run_setting_has_a_flag()
    {
        foreach (var setting in RunSetting.All)
        {
            var line = setting.IsSwitch ? Parse("run", setting.Flag) : Parse("run", setting.Flag, "x");
            Assert.Equal(setting.IsSwitch ? "true" : "x", line.Settings[setting.ConfigurationKey + (setting.IsRepeatable ? ":0" : "")]);
        }
    }

    [Fact]
    public void Values_are_taken_as_strings_so_validation_names_a_bad_one()
    {
        var line = Parse("run", "--cpus", "abc", "--timeout", "soon", "--memfd=maybe");

        Assert.Equal(ParsedVerb.Run, line.Verb);
        Assert.Equal("abc", line.Settings["KvmSharp:Cpus"]);
        Assert.Equal("soon", line.Settings["KvmSharp:Timeout"]);
        Assert.Equal("maybe", line.Settings["KvmSharp:Memfd"]);
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
        Assert.Equal("/tmp/a=b.bin", Parse("run", "--image=/tmp/a=b.bin").Settings["KvmSharp:Image"]);
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
        Assert.Equal("true", Parse("run", "--force-memory").Settings["KvmSharp:ForceMemory"]);
        Assert.Equal("true", Parse("--stats").Settings["KvmSharp:Stats"]);
    }

    [Fact]
    public void Switch_does_not_swallow_the_next_flag()
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
    public void Caps_takes_the_kvm_device_flag_and_nothing_else()
    {
        var line = Parse("caps", "--kvm-device", "/dev/kvm2");
        Assert.Equal(ParsedVerb.Caps, line.Verb);
        Assert.Equal("/dev/kvm2", line.Settings["KvmSharp:KvmDevice"]);

        var refused = Parse("caps", "--memory", "1G");
        Assert.Equal(ParsedVerb.Error, refused.Verb);
        Assert.Contains("'--memory'", refused.Error);
    }

    [Fact]
    public void Help_takes_a_command_to_explain()
    {
        Assert.Equal("caps", Parse("help", "caps").HelpTopic);
        Assert.Null(Parse("help").HelpTopic);
    }

    [Theory]
    [InlineData("start")]
    [InlineData("RUN")]
    [InlineData("stray")]
    public void Unknown_verb_is_an_error_naming_it(string verb)
    {
        var line = Parse(verb, "--cpus", "2");

        Assert.Equal(ParsedVerb.Error, line.Verb);
        Assert.Contains($"'{verb}'", line.Error, StringComparison.Ordinal);
        Assert.Contains("See 'kvmsharp --help'", line.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--bogus")]
    [InlineData("-m")]
    [InlineData("--Memory")]
    public void Unknown_option_is_an_error_naming_it(string option)
    {
        var line = Parse("run", "--cpus", "2", option);

        Assert.Equal(ParsedVerb.Error, line.Verb);
        Assert.Contains($"'{option}'", line.Error, StringComparison.Ordinal);
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
        var line = Parse("run", "--memfd", flag);

        Assert.Equal(ParsedVerb.Error, line.Verb);
        Assert.Contains($"'{flag}'", line.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void The_verb_may_be_left_out_before_flags()
    {
        var parsed = Parse("--memory", "128M", "--cpus", "2");

        Assert.Equal(ParsedVerb.Run, parsed.Verb);
        Assert.Equal("128M", parsed.Settings["KvmSharp:Memory"]);
        Assert.Equal("2", parsed.Settings["KvmSharp:Cpus"]);
    }

    [Fact]
    public void A_value_flag_followed_by_another_flag_is_missing_its_value()
    {
        var line = Parse("run", "--memory", "--cpus", "2");

        Assert.Equal(ParsedVerb.Error, line.Verb);
        Assert.Contains("--memory needs a value, not the flag '--cpus'", line.Error);
    }

    [Fact]
    public void Help_text_lists_every_flag_and_the_notes()
    {
        var output = new StringWriter();

        Assert.True(new CommandLine().WriteHelp(null, output));
        foreach (var setting in RunSetting.All) Assert.Contains(setting.Flag, output.ToString());
        Assert.Contains(CommandLine.Notes.Split('\n')[0], output.ToString());
        Assert.False(new CommandLine().WriteHelp("bogus", new StringWriter()));
    }
}
