using System.Text;
using KvmSharp.Devices.Events;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Devices.Virtio.Vsock;

/// <summary>
/// The unix sockets of the hybrid protocol. The listening socket is created 0600 (the mode is set on
/// the socket before bind, so no other user can connect in between) in a directory only the VMM's user
/// (or root) can write: anyone who can write there could put a socket at PATH_PORT and receive the
/// guest's connections. Every descriptor is non-blocking and close-on-exec.
/// </summary>
public static unsafe class VsockSocketPath
{
    private const int Backlog = 128;

    /// <summary>Why <paramref name="path"/> must not be used (one line with the fix), or null when it is safe.</summary>
    public static string? WhyUnsafe(string path)
    {
        string full = Path.GetFullPath(path);
        string directory = Path.GetDirectoryName(full) ?? "/";
        stat status;
        if (!TryStat(directory, follow: true, &status))
        {
            return $"its directory {directory} does not exist; create it (mode 0700) first";
        }

        if ((status.st_mode & S_IFMT) != S_IFDIR)
        {
            return $"{directory} is not a directory";
        }

        uint user = geteuid();
        if (status.st_uid != user && status.st_uid != 0)
        {
            return $"its directory {directory} belongs to uid {status.st_uid}, not to KvmSharp's user (uid {user}) or root; use a directory of your own, e.g. $XDG_RUNTIME_DIR or one made with mkdir -m 0700";
        }

        if ((status.st_mode & 0x12) != 0)
        {
            return $"its directory {directory} is writable by other users (mode {Convert.ToString((int)(status.st_mode & 0xFFF), 8)}), who could plant sockets at PATH_PORT for the guest's connections; use a directory only you can write, e.g. one made with mkdir -m 0700";
        }

        if (TryStat(full, follow: false, &status))
        {
            if ((status.st_mode & S_IFMT) != S_IFSOCK)
            {
                return $"{full} exists and is not a socket; remove it or give another path";
            }

            // A stale socket is replaced; one somebody still listens on (another VM) is not taken over.
            using var live = TryConnect(full, out _);
            if (live is not null)
            {
                return $"{full} is in use: a running process (another VM?) listens on it; give another path";
            }
        }

        return null;
    }

    /// <summary>Listen on <paramref name="path"/> (a stale socket there is replaced), mode 0600. Throws <see cref="HostCallException"/>.</summary>
    public static FileDescriptorHandle Listen(string path)
    {
        var handle = NewSocket();
        try
        {
            int fd = (int)handle.DangerousGetHandle();
            // The mode of the inode bind creates comes from the socket's own inode (minus the umask).
            if (fchmod(fd, 0x180) != 0)
            {
                throw new HostCallException("fchmod", errno, $"socket for {path}");
            }

            stat status;
            if (TryStat(path, follow: false, &status) && (status.st_mode & S_IFMT) == S_IFSOCK)
            {
                File.Delete(path); // left by an earlier run
            }

            sockaddr_un address = Address(path, out int length);
            if (bind(fd, (sockaddr*)&address, length) != 0)
            {
                throw new HostCallException("bind", errno, path);
            }

            if (WithPath(path, p => chmod(p, 0x180)) != 0)
            {
                throw new HostCallException("chmod", errno, path);
            }

            if (listen(fd, Backlog) != 0)
            {
                throw new HostCallException("listen", errno, path);
            }

            return handle;
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Connect to <paramref name="path"/> without blocking: the socket, or null with the errno (ENOENT, ECONNREFUSED, EAGAIN when its backlog is full...).</summary>
    public static FileDescriptorHandle? TryConnect(string path, out int error)
    {
        var handle = NewSocket();
        sockaddr_un address = Address(path, out int length);
        if (connect((int)handle.DangerousGetHandle(), (sockaddr*)&address, length) != 0)
        {
            error = errno;
            handle.Dispose();
            return null;
        }

        error = 0;
        return handle;
    }

    /// <summary>Accept one waiting client (non-blocking, close-on-exec), or null when none waits.</summary>
    public static FileDescriptorHandle? TryAccept(FileDescriptorHandle listener)
    {
        while (true)
        {
            int fd = accept4((int)listener.DangerousGetHandle(), null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0)
            {
                return new FileDescriptorHandle(fd);
            }

            int error = errno;
            if (error == EINTR || error == ECONNABORTED)
            {
                continue;
            }

            return null; // EAGAIN, or out of descriptors (EMFILE): the client waits in the backlog
        }
    }

    private static FileDescriptorHandle NewSocket()
    {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
        {
            throw new HostCallException("socket", errno, "AF_UNIX");
        }

        return new FileDescriptorHandle(fd);
    }

    private static sockaddr_un Address(string path, out int length)
    {
        var address = new sockaddr_un { sun_family = AF_UNIX };
        byte[] bytes = Encoding.UTF8.GetBytes(path);
        if (bytes.Length >= 108)
        {
            throw new HostCallException("connect", ENAMETOOLONG, path);
        }

        for (int i = 0; i < bytes.Length; i++)
        {
            address.sun_path[i] = bytes[i];
        }

        address.sun_path[bytes.Length] = 0;
        length = sizeof(ushort) + bytes.Length + 1;
        return address;
    }

    private static bool TryStat(string path, bool follow, stat* status)
        => WithPath(path, p => follow ? stat(p, status) : lstat(p, status)) == 0;

    private delegate int PathCall(byte* path);

    private static int WithPath(string path, PathCall call)
    {
        fixed (byte* p = Encoding.UTF8.GetBytes(path + "\0"))
        {
            return call(p);
        }
    }
}
