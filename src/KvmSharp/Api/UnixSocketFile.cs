using System.Net.Sockets;
using KvmSharp.Cli;

namespace KvmSharp.Api;

/// <summary>
/// The API's listening socket at a path: created with mode 0600 before anyone can connect (bound, chmod-ed, and only
/// then listened on by Kestrel), replacing a stale socket file nobody listens on, never another file.
/// </summary>
internal static class UnixSocketFile
{
    private const int FileTypeMask = 0xF000, SocketFileType = 0xC000;

    public static unsafe bool IsSocket(string path)
    {
        Tmds.Linux.stat status;
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        {
            return Tmds.Linux.LibC.lstat(p, &status) == 0 && ((int)status.st_mode & FileTypeMask) == SocketFileType;
        }
    }

    /// <summary>A bound, not yet listening socket at <paramref name="path"/>, mode 0600. Refusals are <see cref="OptionsException"/>s (exit 2).</summary>
    public static Socket Bind(string path)
    {
        if (OperatingSystem.IsWindows()) throw new PlatformNotSupportedException("the API socket needs Linux");
        string full = Path.GetFullPath(path);
        if (File.Exists(full))
        {
            if (!IsSocket(full)) throw new OptionsException(RunSetting.ApiSock, path, "exists and is not a socket; give a new path (KvmSharp replaces only a socket nobody listens on)");
            if (SomeoneListens(full)) throw new OptionsException(RunSetting.ApiSock, path, "another process listens on this socket (another kvmsharp?); give another path or stop that one");
            File.Delete(full);
        }
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(full));
            // No connection can be made before listen(2): the mode is set while nobody can reach the socket.
            File.SetUnixFileMode(full, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            return socket;
        }
        catch (Exception e) when (e is SocketException or IOException or UnauthorizedAccessException)
        {
            socket.Dispose();
            throw new OptionsException(RunSetting.ApiSock, path, $"cannot create the socket: {e.Message}");
        }
    }

    private static bool SomeoneListens(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
