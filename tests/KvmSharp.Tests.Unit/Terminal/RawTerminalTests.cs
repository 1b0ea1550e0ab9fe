using KvmSharp.Terminal;
using Tmds.Linux;
using Xunit;
using static Tmds.Linux.LibC;

namespace KvmSharp.Tests.Unit.Terminal;

public sealed class RawTerminalTests
{
    [Fact]
    public unsafe void Raw_mode_turns_off_line_editing_echo_signal_keys_and_cr_translation_but_keeps_output_processing()
    {
        termios cooked = default;
        cooked.c_iflag = (uint)(ICRNL | IXON | BRKINT);
        cooked.c_oflag = (uint)OPOST;
        cooked.c_lflag = (uint)(ICANON | ECHO | ISIG | IEXTEN | ECHONL);
        cooked.c_cc[VMIN] = 0;
        cooked.c_cc[VTIME] = 5;

        termios raw = RawTerminal.MakeRaw(cooked);

        Assert.Equal(0u, raw.c_lflag & (uint)(ICANON | ECHO | ISIG | IEXTEN | ECHONL));
        Assert.Equal(0u, raw.c_iflag & (uint)(ICRNL | IXON | BRKINT));
        Assert.Equal((uint)OPOST, raw.c_oflag & (uint)OPOST);
        Assert.Equal((uint)CS8, raw.c_cflag & (uint)CSIZE);
        Assert.Equal(1, raw.c_cc[VMIN]);
        Assert.Equal(0, raw.c_cc[VTIME]);
    }

    [Fact]
    public void A_pipe_is_no_terminal_and_is_left_alone()
    {
        using var pipe = new System.IO.Pipes.AnonymousPipeServerStream();
        int fd = (int)pipe.SafePipeHandle.DangerousGetHandle();

        Assert.False(RawTerminal.IsTerminal(fd));
        Assert.Null(RawTerminal.TryEnter(fd));
    }
}
