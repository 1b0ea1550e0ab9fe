using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Guests;
using Xunit;

namespace KvmSharp.Tests.Integration.Cli;

/// <summary>The command line's own behaviour through the binary: help, --version, completions, and where settings come from.</summary>
public sealed class HelpAndSettingsTests : IDisposable
{
    private readonly TempFiles _files = new();

    public void Dispose() => _files.Dispose();

    [Theory]
    [InlineData("help")]
    [InlineData("--help")]
    [InlineData("-h")]
    public void Help_lists_the_commands_every_run_flag_and_the_exit_statuses(string argument)
    {
        var result = CliRun.Run([argument]);

        Assert.True(result.ExitCode == 0, result.ToString());
        foreach (string flag in new[] { "--memory", "--force-memory", "--cpus", "--image", "--entry", "--mode", "--kernel", "--initrd", "--cmdline", "--on-reboot", "--expect", "--timeout", "--serial", "--memfd", "--stats", "--track", "--kvm-device", "--version" })
            Assert.Contains(flag, result.StandardOutput);
        Assert.Contains("caps", result.StandardOutput);
        Assert.Contains("/etc/kvmsharp/appsettings.json", result.StandardOutput);
        Assert.Contains("70 a KvmSharp or host failure", result.StandardOutput);
    }

    [Fact]
    public void Help_for_a_command_shows_its_options()
    {
        var result = CliRun.Run(["help", "caps"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("kvmsharp caps [options]", result.StandardOutput);
        Assert.Contains("--kvm-device", result.StandardOutput);
        Assert.DoesNotContain("--memory <SIZE>", result.StandardOutput);
    }

    [Fact]
    public void Version_prints_the_informational_version()
    {
        var result = CliRun.Run(["--version"]);

        string expected = typeof(KvmSharp.Program).Assembly
            .GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .Cast<System.Reflection.AssemblyInformationalVersionAttribute>().Single().InformationalVersion;
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(expected, result.StandardOutput.Trim());
    }

    [Fact]
    public void The_suggest_directive_completes_flags_and_values()
    {
        var flags = CliRun.Run(["[suggest]", "--me"]);
        Assert.True(flags.ExitCode == 0, flags.ToString());
        Assert.Equal(["--memfd", "--memory"], flags.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).Order().ToArray());

        // dotnet-suggest's form: the cursor position, then the whole command line as one argument.
        var modes = CliRun.Run(["[suggest:11]", "run --mode "]);
        Assert.True(modes.ExitCode == 0, modes.ToString());
        Assert.Contains("long", modes.StandardOutput);
        Assert.Contains("real", modes.StandardOutput);
    }

    [KvmFact]
    public void Appsettings_json_in_the_working_directory_is_read_and_the_environment_and_flags_override_it()
    {
        _files.WriteText("appsettings.json", """{ "KvmSharp": { "Memory": "16M" } }""");

        var fromFile = CliRun.Run(["run"], workingDirectory: _files.Root);
        Assert.True(fromFile.ExitCode == 0, fromFile.ToString());
        Assert.Contains("memory: 16 MiB", fromFile.StandardOutput);

        var fromEnvironment = CliRun.Run(["run"], new Dictionary<string, string?> { ["KVMSHARP__MEMORY"] = "8M" }, _files.Root);
        Assert.Contains("memory: 8 MiB", fromEnvironment.StandardOutput);

        var fromFlag = CliRun.Run(["--memory=4M"], new Dictionary<string, string?> { ["KVMSHARP__MEMORY"] = "8M" }, _files.Root);
        Assert.Contains("memory: 4 MiB", fromFlag.StandardOutput);
        Assert.Contains(BuiltInGuest.Banner, fromFlag.StandardOutput);
    }

    [KvmFact]
    public void A_track_range_in_ram_remapped_above_4_GiB_is_accepted()
    {
        // 4 GiB of guest RAM: 3 GiB below the hole, the last GiB at 0x100000000. Pages are only touched when used.
        var result = CliRun.Run(["run", "--memory", "4G", "--force-memory", "--track", "0x100000000+0x1000,0x180000+0x1000"]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("auditing guest writes to 0x100000000-0x100001000, 0x180000-0x181000", result.StandardError);
    }
}
