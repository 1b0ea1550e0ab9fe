using KvmSharp.Cli;
using KvmSharp.Tests.Unit.Boot;
using Xunit;

namespace KvmSharp.Tests.Unit.Cli;

/// <summary>--vsock cid=N,socket=PATH: parsed from the flags and the environment, checked before the VM exists, nothing created.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class VsockSettingsTests : IDisposable
{
    private const ulong Host = 16UL << 30;
    private readonly string _directory = Directory.CreateTempSubdirectory("kvmsharp-vsock-cli-").FullName;
    private readonly string _kernel;

    public VsockSettingsTests()
    {
        File.SetUnixFileMode(_directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
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
    public void A_valid_vsock_is_validated_without_creating_the_socket()
    {
        string socket = Path.Combine(_directory, "v.sock");
        var options = Bind("run", "--kernel", _kernel, "--vsock", $"cid=7,socket={socket}").Validate(Host);
        Assert.Equal(7u, options.Vsock!.Cid);
        Assert.Equal(socket, options.Vsock.SocketPath);
        Assert.False(File.Exists(socket));
        Assert.Null(Bind("run", "--kernel", _kernel).Validate(Host).Vsock);
    }

    [Theory]
    [InlineData("cid=1,socket={dir}/v.sock", "cid=1 is not valid")]
    [InlineData("cid=3", "socket=PATH is missing")]
    [InlineData("cid=3,socket={dir}/missing/v.sock", "does not exist")]
    [InlineData("cid=3,socket={dir}/open/v.sock", "writable by other users")]
    public void Bad_values_name_the_setting_and_the_fix(string value, string reason)
    {
        Directory.CreateDirectory(Path.Combine(_directory, "open"));
        File.SetUnixFileMode(Path.Combine(_directory, "open"), (UnixFileMode)0x1FF);
        string text = value.Replace("{dir}", _directory, StringComparison.Ordinal);
        var error = Assert.Throws<OptionsException>(() => Bind("run", "--kernel", _kernel, "--vsock", text).Validate(Host));
        Assert.Equal(RunSetting.Vsock, error.Setting);
        Assert.Contains(reason, error.Message);
        Assert.StartsWith("invalid setting vsock (--vsock, KvmSharp:Vsock, KVMSHARP__VSOCK)", error.Message);
    }

    [Fact]
    public void Vsock_without_a_kernel_is_refused()
    {
        var error = Assert.Throws<OptionsException>(() => Bind("run", "--vsock", $"cid=3,socket={_directory}/v.sock").Validate(Host));
        Assert.Contains("only applies with --kernel", error.Message);
    }
}
