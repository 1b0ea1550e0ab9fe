using System.Runtime.InteropServices;
using System.Text;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Tests.Integration.SerialConsole;

/// <summary>
/// A real pseudo-terminal (openpty): the test holds the master side, reads everything written to the terminal and
/// types into it; the slave side becomes a child's controlling terminal.
/// </summary>
public sealed unsafe partial class PseudoTerminal : IDisposable
{
    private readonly StringBuilder _output = new();
    private readonly Thread _reader;
    private int _master;
    private int _slave;

    public PseudoTerminal()
    {
        if (openpty(out _master, out _slave, 0, 0, 0) != 0)
            throw new IOException($"openpty failed: errno {Marshal.GetLastPInvokeError()}");
        SlavePath = ttyname_path(_slave);
        _reader = new Thread(ReadMaster) { IsBackground = true, Name = "pty-master-reader" };
        _reader.Start();
    }

    /// <summary>The terminal's path (/dev/pts/N), for a child to open as stdin/stdout.</summary>
    public string SlavePath { get; }

    /// <summary>Everything the terminal has shown so far (as Latin-1, one char per byte).</summary>
    public string Output
    {
        get
        {
            lock (_output) return _output.ToString();
        }
    }

    /// <summary>Type bytes, as a user at this terminal would.</summary>
    public void Type(params byte[] keys)
    {
        fixed (byte* p = keys)
        {
            if (write(_master, p, keys.Length) != keys.Length) throw new IOException($"write to the pty master failed: errno {errno}");
        }
    }

    public void Type(string keys) => Type(Encoding.Latin1.GetBytes(keys));

    /// <summary>Wait until the terminal has shown <paramref name="text"/>.</summary>
    public bool WaitFor(string text, TimeSpan timeout) => SpinWait.SpinUntil(() => Output.Contains(text, StringComparison.Ordinal), timeout);

    /// <summary>The terminal's current attributes (as any process holding it sees them).</summary>
    public termios Attributes
    {
        get
        {
            termios attributes;
            if (tcgetattr(_slave, &attributes) != 0) throw new IOException($"tcgetattr failed: errno {errno}");
            return attributes;
        }
    }

    private void ReadMaster()
    {
        var buffer = new byte[4096];
        while (true)
        {
            long read;
            fixed (byte* p = buffer) read = LibC.read(Volatile.Read(ref _master), p, buffer.Length);
            if (read <= 0)
            {
                if (read < 0 && errno == EINTR) continue;
                return; // EIO once every slave fd is closed, or the master was closed
            }
            lock (_output) _output.Append(Encoding.Latin1.GetString(buffer, 0, (int)read));
        }
    }

    private static string ttyname_path(int fd)
    {
        byte* name = ttyname(fd);
        if (name == null) throw new IOException($"ttyname failed: errno {errno}");
        return Marshal.PtrToStringUTF8((nint)name)!;
    }

    public void Dispose()
    {
        close(_slave);
        close(_master);
        _reader.Join(TimeSpan.FromSeconds(2));
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int openpty(out int master, out int slave, nint name, nint termios, nint winsize);
}
