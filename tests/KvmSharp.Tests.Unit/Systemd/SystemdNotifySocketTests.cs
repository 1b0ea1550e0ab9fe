using KvmSharp.Systemd;
using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;

namespace KvmSharp.Tests.Unit.Systemd;

/// <summary>NOTIFY_SOCKET's address forms and the datagrams sent to it, through a real AF_UNIX SOCK_DGRAM socket.</summary>
public sealed class SystemdNotifySocketTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    [Fact]
    public void An_abstract_name_with_at_reaches_the_socket_bound_in_the_abstract_namespace()
    {
        using var listener = new NotifyListener();
        Assert.StartsWith("@", listener.Address);
        using var socket = SystemdNotifySocket.Open(listener.Address)!;

        Assert.True(socket.Send("READY=1\nSTATUS=running"));

        Assert.True(listener.WaitFor(a => a == "STATUS=running", Wait), listener.Describe());
        Assert.Equal("READY=1\nSTATUS=running", Assert.Single(listener.Messages).Message);
    }

    [Fact]
    public void A_path_reaches_the_socket_bound_at_that_path()
    {
        string path = Path.Combine(Path.GetTempPath(), $"kvmsharp-notify-{Guid.NewGuid():N}.sock");
        using var listener = new NotifyListener(path);
        using var socket = SystemdNotifySocket.Open(path)!;

        Assert.True(socket.Send("WATCHDOG=1"));

        Assert.True(listener.WaitFor(a => a == "WATCHDOG=1", Wait), listener.Describe());
    }

    [Fact]
    public void Unset_or_empty_means_no_notifications()
    {
        Assert.Null(SystemdNotifySocket.Open(null));
        Assert.Null(SystemdNotifySocket.Open(""));
    }

    [Theory]
    [InlineData("run/notify", "not an absolute path")]
    [InlineData("vsock:2:1234", "vsock: is not supported")]
    [InlineData("@", "names no abstract socket")]
    public void An_unusable_address_is_refused_naming_the_variable_and_value(string address, string why)
    {
        var e = Assert.Throws<ArgumentException>(() => SystemdNotifySocket.Open(address));
        Assert.Contains("NOTIFY_SOCKET=", e.Message);
        Assert.Contains(why, e.Message);
    }

    [Fact]
    public void A_manager_that_went_away_is_reported_once_and_the_sends_only_fail()
    {
        string path = Path.Combine(Path.GetTempPath(), $"kvmsharp-notify-gone-{Guid.NewGuid():N}.sock");
        using var socket = SystemdNotifySocket.Open(path)!;
        var failures = new List<string>();
        socket.SendFailed += failures.Add;

        Assert.False(socket.Send("READY=1"));
        Assert.False(socket.Send("WATCHDOG=1"));

        Assert.Equal(2, socket.Failures);
        var failure = Assert.Single(failures);
        Assert.Contains("'READY=1'", failure);
        Assert.Contains(path, failure);
        Assert.Contains("sendto", failure);
    }
}
