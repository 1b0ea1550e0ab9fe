using System.Text;
using KvmSharp.Terminal;
using Xunit;

namespace KvmSharp.Tests.Unit.Terminal;

public sealed class ConsoleEscapeTests
{
    [Fact]
    public void Ordinary_bytes_go_to_the_guest_unchanged_including_ctrl_c_and_cr()
    {
        var (toGuest, commands) = Decode("ls -l\r\u0003\u001b[A");

        Assert.Equal("ls -l\r\u0003\u001b[A", toGuest);
        Assert.Empty(commands);
    }

    [Fact]
    public void Ctrl_a_x_quits_and_sends_nothing()
    {
        var (toGuest, commands) = Decode("ab\u0001xcd");

        Assert.Equal("abcd", toGuest);
        Assert.Equal([ConsoleCommand.Quit], commands);
    }

    [Fact]
    public void Ctrl_a_h_and_question_mark_ask_for_help()
    {
        var (toGuest, commands) = Decode("\u0001h\u0001?\u0001H");

        Assert.Equal("", toGuest);
        Assert.Equal([ConsoleCommand.Help, ConsoleCommand.Help, ConsoleCommand.Help], commands);
    }

    [Fact]
    public void Ctrl_a_ctrl_a_sends_one_literal_ctrl_a()
    {
        var (toGuest, commands) = Decode("\u0001\u0001\u0001\u0001x");

        Assert.Equal("\u0001\u0001x", toGuest);
        Assert.Empty(commands);
    }

    [Fact]
    public void An_unknown_key_after_ctrl_a_is_swallowed_and_the_escape_ends()
    {
        var (toGuest, commands) = Decode("\u0001zx");

        Assert.Equal("x", toGuest);
        Assert.Empty(commands);
    }

    [Fact]
    public void The_escape_state_survives_a_split_between_reads()
    {
        var escape = new ConsoleEscape();
        Assert.False(escape.Decode(ConsoleEscape.Prefix, out _, out var first));
        Assert.False(escape.Decode((byte)'x', out _, out var second));

        Assert.Equal(ConsoleCommand.None, first);
        Assert.Equal(ConsoleCommand.Quit, second);
    }

    private static (string ToGuest, List<ConsoleCommand> Commands) Decode(string typed)
    {
        var escape = new ConsoleEscape();
        var toGuest = new List<byte>();
        var commands = new List<ConsoleCommand>();
        foreach (byte b in Encoding.ASCII.GetBytes(typed))
        {
            if (escape.Decode(b, out byte forward, out var command)) toGuest.Add(forward);
            if (command != ConsoleCommand.None) commands.Add(command);
        }
        return (Encoding.ASCII.GetString(toGuest.ToArray()), commands);
    }
}
