using System.Diagnostics;
using KvmSharp.Cli;
using KvmSharp.Exec;
using Xunit;

namespace KvmSharp.Tests.Unit.Exec;

/// <summary>`kvmsharp exec` arguments, the environment it passes, and the request script (run by the host's /bin/sh).</summary>
public sealed class ExecArgumentsTests
{
    [Fact]
    public void Options_before_the_double_dash_and_the_command_after_it()
    {
        string dir = Path.GetTempPath();
        var parsed = ExecArguments.Parse(["--memory", "1G", "--cpus=2", "--rw", dir, "--share", "path=/x,tag=t", "--timeout", "30", "--", "sh", "-c", "--memory"]);
        Assert.Equal("1G", parsed.Memory);
        Assert.Equal("2", parsed.Cpus);
        Assert.Equal("30", parsed.Timeout);
        Assert.Equal(["path=/x,tag=t"], parsed.Shares);
        Assert.Equal([Path.GetFullPath(dir).TrimEnd('/')], parsed.WritableDirectories);
        Assert.Equal(["sh", "-c", "--memory"], parsed.Command);
        Assert.Equal(ExecArguments.DefaultMemory, ExecArguments.Parse(["--", "true"]).Memory);
    }

    [Theory]
    [InlineData(new string[0], "no command")]
    [InlineData(new[] { "--" }, "no command")]
    [InlineData(new[] { "true" }, "unknown option 'true'")]
    [InlineData(new[] { "--bogus", "1", "--", "true" }, "unknown option '--bogus'")]
    [InlineData(new[] { "--memory", "--", "true" }, "--memory needs a value")]
    [InlineData(new[] { "--rw", "/no/such/dir/kvmsharp", "--", "true" }, "no such directory")]
    public void Bad_arguments_are_one_line_errors(string[] args, string expected)
    {
        var error = Assert.Throws<OptionsException>(() => ExecArguments.Parse(args));
        Assert.Contains(expected, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Theory]
    [InlineData("PATH", true)]
    [InlineData("HOME", true)]
    [InlineData("CI", true)]
    [InlineData("DISPLAY", false)]
    [InlineData("SSH_AUTH_SOCK", false)]
    [InlineData("XDG_RUNTIME_DIR", false)]
    [InlineData("DBUS_SESSION_BUS_ADDRESS", false)]
    [InlineData("1BAD", false)]
    [InlineData("A-B", false)]
    public void Host_only_and_invalid_names_are_not_passed(string name, bool passed) => Assert.Equal(passed, ExecRequest.IsPassed(name));

    [Fact]
    public void The_request_script_restores_cwd_environment_and_argv_exactly()
    {
        if (!File.Exists("/bin/sh")) Assert.Fail("/bin/sh is missing: the request script cannot be checked");
        string cwd = Directory.CreateTempSubdirectory("kvmsharp exec 'cwd'").FullName;
        try
        {
            string[] argv = ["/bin/sh", "-c", "printf '%s|' \"$PWD\" \"$(pwd)\" \"$GREETING\" \"${DISPLAY-unset}\" \"$@\"", "zero", "it's", "$HOME", "two\nlines", ""];
            var environment = new Dictionary<string, string> { ["GREETING"] = "a 'quoted' $value", ["DISPLAY"] = ":0", ["PATH"] = "/usr/bin:/bin" };
            string script = ExecRequest.Script(argv, cwd, environment);
            var start = new ProcessStartInfo("/usr/bin/env") { RedirectStandardOutput = true, UseShellExecute = false };
            foreach (string arg in new[] { "-i", "/bin/sh", "-c", script }) start.ArgumentList.Add(arg);
            using var process = Process.Start(start)!;
            string output = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            Assert.Equal(0, process.ExitCode);
            Assert.Equal($"{cwd}|{cwd}|a 'quoted' $value|unset|it's|$HOME|two\nlines||", output);
        }
        finally
        {
            Directory.Delete(cwd);
        }
    }

    [Fact]
    public void A_missing_working_directory_is_status_127()
    {
        string script = ExecRequest.Script(["true"], "/no/such/kvmsharp/dir", []);
        var start = new ProcessStartInfo("/bin/sh") { RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(script);
        using var process = Process.Start(start)!;
        process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.Equal(ExecRequest.NoWorkingDirectory, process.ExitCode);
    }

    [Fact]
    public void The_default_guest_comes_from_the_cache_pointer_or_a_clear_error()
    {
        string cache = Directory.CreateTempSubdirectory("kvmsharp-exec-cache-").FullName;
        try
        {
            string? Env(string name) => name == "KVMSHARP_CACHE" ? cache : null;
            var missing = Assert.Throws<OptionsException>(() => ExecGuestFiles.Resolve(Env));
            Assert.Contains("scripts/guest/fetch-guest.sh", missing.Message);
            Directory.CreateDirectory(Path.Combine(cache, "guest"));
            File.WriteAllText(Path.Combine(cache, ExecGuestFiles.PointerFile), "KERNEL=/k/vmlinuz\nINITRD=/k/initrd.img\n");
            Assert.Equal(("/k/vmlinuz", "/k/initrd.img"), ExecGuestFiles.Resolve(Env));
        }
        finally
        {
            Directory.Delete(cache, recursive: true);
        }
    }

    [Theory]
    [InlineData("7\n", 7)]
    [InlineData("0", 0)]
    [InlineData("", null)]
    [InlineData("x", null)]
    [InlineData("300", null)]
    public void The_status_port_text_is_the_exit_status(string text, int? expected)
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, text);
            Assert.Equal(expected, ExecCommand.ReadStatus(path));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
