using KvmSharp.Devices.Virtio.Vsock;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio.Vsock;

[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class VsockSpecTests
{
    [Theory]
    [InlineData("cid=3,socket=/run/v.sock", 3u, "/run/v.sock")]
    [InlineData("socket=/tmp/x/v,cid=4294967294", 4294967294u, "/tmp/x/v")]
    public void Valid_values_parse(string text, uint cid, string path)
    {
        Assert.True(VsockSpec.TryParse(text, out var spec, out string? error), error);
        Assert.Equal(new VsockSpec(cid, path), spec);
    }

    [Theory]
    [InlineData("", "empty value")]
    [InlineData("cid=2,socket=/a", "cid=2 is not valid")]
    [InlineData("cid=4294967295,socket=/a", "is not valid")]
    [InlineData("cid=-1,socket=/a", "is not valid")]
    [InlineData("cid=3", "socket=PATH is missing")]
    [InlineData("socket=/a", "cid=N is missing")]
    [InlineData("cid=3,cid=4,socket=/a", "given twice")]
    [InlineData("cid=3,socket=", "socket= is empty")]
    [InlineData("cid=3,socket=/a,port=5", "unknown key 'port'")]
    [InlineData("cid=3,/a", "not KEY=VALUE")]
    public void Invalid_values_are_refused_with_the_reason(string text, string reason)
    {
        Assert.False(VsockSpec.TryParse(text, out var spec, out string? error));
        Assert.Null(spec);
        Assert.Contains(reason, error);
        Assert.StartsWith("--vsock: ", error);
    }

    [Fact]
    public void A_path_too_long_for_PATH_PORT_is_refused()
    {
        string path = "/" + new string('a', VsockSpec.MaxSocketPathBytes);
        Assert.False(VsockSpec.TryParse($"cid=3,socket={path}", out _, out string? error));
        Assert.Contains("longer than", error);
    }

    [Fact]
    public void A_directory_others_can_write_is_unsafe_and_a_private_one_is_safe()
    {
        var directory = Directory.CreateTempSubdirectory("kvmsharp-vsock-spec-");
        try
        {
            File.SetUnixFileMode(directory.FullName, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            string path = Path.Combine(directory.FullName, "v.sock");
            Assert.Null(VsockSocketPath.WhyUnsafe(path));

            File.SetUnixFileMode(directory.FullName, (UnixFileMode)0x1FF);
            Assert.Contains("writable by other users", VsockSocketPath.WhyUnsafe(path));

            File.SetUnixFileMode(directory.FullName, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            using (var listener = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified))
            {
                listener.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
                listener.Listen();
                Assert.Contains("is in use", VsockSocketPath.WhyUnsafe(path));
            }

            Assert.Null(VsockSocketPath.WhyUnsafe(path)); // stale now: it will be replaced
            File.Delete(path);
            File.WriteAllText(path, "not a socket");
            Assert.Contains("is not a socket", VsockSocketPath.WhyUnsafe(path));
            Assert.Contains("does not exist", VsockSocketPath.WhyUnsafe(Path.Combine(directory.FullName, "missing", "v.sock")));
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }
}
