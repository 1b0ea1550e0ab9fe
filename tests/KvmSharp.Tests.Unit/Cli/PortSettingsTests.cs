using System.Net.Sockets;
using KvmSharp.Cli;
using KvmSharp.Tests.Unit.Boot;
using Xunit;

namespace KvmSharp.Tests.Unit.Cli;

/// <summary>--port (repeatable): parsed from flags and settings files, each host side checked before the VM exists, nothing created.</summary>
public sealed class PortSettingsTests : IDisposable
{
    private const ulong Host = 16UL << 30;
    private readonly string _directory = Directory.CreateTempSubdirectory("kvmsharp-port-cli-").FullName;
    private readonly string _kernel;

    public PortSettingsTests()
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

    private OptionsException Refused(params string[] ports)
    {
        var args = new List<string> { "run", "--kernel", _kernel };
        foreach (string port in ports) args.AddRange(["--port", port]);
        var error = Assert.Throws<OptionsException>(() => Bind([.. args]).Validate(Host));
        Assert.Equal("port", error.Setting!.Name);
        return error;
    }

    [Fact]
    public void Ports_keep_their_order_and_create_nothing_while_validated()
    {
        string log = Path.Combine(_directory, "agent.log"), socket = Path.Combine(_directory, "agent.sock");
        var options = Bind("run", "--kernel", _kernel, "--port", $"name=org.test.log,path={log}", "--port", $"name=agent,socket={socket}").Validate(Host);
        Assert.Equal(["org.test.log", "agent"], options.Ports.Select(p => p.Name));
        Assert.Equal(log, options.Ports[0].FilePath);
        Assert.Equal(socket, options.Ports[1].SocketPath);
        Assert.False(options.VirtioConsole);
        Assert.False(File.Exists(log));
        Assert.False(File.Exists(socket));
    }

    [Fact]
    public void A_settings_file_gives_a_list()
    {
        string file = Path.Combine(_directory, "appsettings.json");
        string a = Path.Combine(_directory, "a.log"), b = Path.Combine(_directory, "b.log");
        File.WriteAllText(file, $$"""{ "KvmSharp": { "Kernel": "{{_kernel}}", "Port": [ "name=a,path={{a}}", "name=b,path={{b}}" ] } }""");
        var options = Settings.Load(new Dictionary<string, string?>(), files: [file]).BindRunOptions().Validate(Host);
        Assert.Equal(["a", "b"], options.Ports.Select(p => p.Name));
    }

    [Fact]
    public void Bad_ports_are_refused_with_the_reason()
    {
        string log = Path.Combine(_directory, "x.log");
        Assert.Contains("name= is missing", Refused($"path={log}").Message);
        Assert.Contains("exactly one of path=FILE or socket=PATH", Refused($"name=x,path={log},socket={log}").Message);
        Assert.Contains("unknown key 'speed'", Refused("name=x,speed=9600").Message);
        Assert.Contains("given twice", Refused($"name=x,path={log}", $"name=x,path={log}.2").Message);
        Assert.Contains("used by another port", Refused($"name=x,path={log}", $"name=y,path={log}").Message);
        Assert.Contains("does not exist", Refused($"name=x,path={_directory}/missing/x.log").Message);
        Assert.Contains("is a directory", Refused($"name=x,path={_directory}").Message);
        string plain = Path.Combine(_directory, "plain");
        File.WriteAllText(plain, "keep");
        Assert.Contains("is not a socket", Refused($"name=x,socket={plain}").Message);
        Assert.Equal("keep", File.ReadAllText(plain));
    }

    [Fact]
    public void A_stale_socket_is_accepted_and_left_for_the_vm_to_replace()
    {
        string path = Path.Combine(_directory, "stale.sock");
        // Held open: .NET unlinks a socket's file when the socket is disposed.
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(path));
        var options = Bind("run", "--kernel", _kernel, "--port", $"name=s,socket={path}").Validate(Host);
        Assert.Equal(path, options.Ports.Single().SocketPath);
        Assert.True(File.Exists(path));
    }

    [Fact]
    public void Ports_need_a_linux_guest()
    {
        var error = Assert.Throws<OptionsException>(() => Bind("run", "--port", $"name=x,path={_directory}/x.log").Validate(Host));
        Assert.Contains("only applies with --kernel", error.Message);
    }
}
