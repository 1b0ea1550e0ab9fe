using System.Text;
using KvmSharp.Devices.Events;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Vmm.Trackers.Remote;

/// <summary>
/// A Unix stream socket carrying the tracker protocol's messages, with file descriptors passed by
/// SCM_RIGHTS. Both ends use it: the VMM's listener and sessions, and a tracker's client.
/// </summary>
public sealed unsafe partial class TrackerSocket : IDisposable
{
    private const int MaxFds = 16;
    // struct cmsghdr on 64-bit Linux: size_t cmsg_len, int cmsg_level, int cmsg_type, then the data (8-byte aligned).
    private const int CmsgHeaderBytes = 16;
    private static int CmsgSpace(int dataBytes) => CmsgHeaderBytes + ((dataBytes + 7) & ~7);
    private int _fd;

    private TrackerSocket(int fd) => _fd = fd;

    public int FileDescriptor => _fd;

    /// <summary>Bind and listen at <paramref name="path"/>, mode 0600 (an existing socket file is replaced).</summary>
    public static TrackerSocket Listen(string path)
    {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) throw new HostCallException("socket", errno, path);
        try
        {
            if (File.Exists(path) || Directory.Exists(path))
            {
                if ((File.GetAttributes(path) & FileAttributes.Directory) != 0)
                    throw new HostCallException("bind", 21 /* EISDIR */, $"{path} is a directory");
                File.Delete(path);
            }
            var address = Address(path);
            // Create it unreachable by others from the start: fchmod on a socket does not change its file's mode.
            uint previous = umask(0x7F); // 0177: the socket file is made 0600
            int bound = bind(fd, (sockaddr*)&address, SizeOf.sockaddr_un);
            int bindErrno = errno;
            umask(previous);
            if (bound != 0) throw new HostCallException("bind", bindErrno, path);
            if (listen(fd, 8) != 0) throw new HostCallException("listen", errno, path);
            return new TrackerSocket(fd);
        }
        catch
        {
            close(fd);
            throw;
        }
    }

    public static TrackerSocket Connect(string path)
    {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) throw new HostCallException("socket", errno, path);
        var address = Address(path);
        if (connect(fd, (sockaddr*)&address, SizeOf.sockaddr_un) != 0)
        {
            int error = errno;
            close(fd);
            throw new HostCallException("connect", error, path);
        }
        return new TrackerSocket(fd);
    }

    private static sockaddr_un Address(string path)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(path);
        var address = new sockaddr_un { sun_family = AF_UNIX };
        if (bytes.Length >= 108) throw new HostCallException("bind", 36 /* ENAMETOOLONG */, $"socket path {path} is longer than 107 bytes");
        for (int i = 0; i < bytes.Length; i++) address.sun_path[i] = bytes[i];
        return address;
    }

    [System.Runtime.InteropServices.LibraryImport("libc")]
    private static partial uint umask(uint mask);

    /// <summary>Wait up to <paramref name="timeoutMilliseconds"/> for a connection; null on timeout.</summary>
    public TrackerSocket? Accept(int timeoutMilliseconds)
    {
        var wanted = new pollfd { fd = _fd, events = (short)POLLIN };
        int ready = poll(&wanted, 1, timeoutMilliseconds);
        if (ready <= 0) return null;
        int client = accept4(_fd, null, null, SOCK_CLOEXEC);
        if (client < 0) return null;
        return new TrackerSocket(client);
    }

    /// <summary>The peer's uid and pid (SO_PEERCRED).</summary>
    public (uint Uid, int Pid) PeerCredentials()
    {
        ucred credentials;
        socklen_t length = (socklen_t)(uint)sizeof(ucred);
        if (getsockopt(_fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) throw new HostCallException("getsockopt(SO_PEERCRED)", errno);
        return ((uint)credentials.uid, (int)credentials.pid);
    }

    /// <summary>Send one message with its file descriptors (all in one sendmsg, so they arrive with its first byte).</summary>
    public void Send(uint type, ulong id, ReadOnlySpan<byte> payload, ReadOnlySpan<int> fds = default)
    {
        if (fds.Length > MaxFds) throw new ArgumentOutOfRangeException(nameof(fds), $"at most {MaxFds} descriptors per message");
        byte[] message = new byte[TrackerWire.HeaderBytes + payload.Length];
        BitConverter.TryWriteBytes(message.AsSpan(0), type);
        BitConverter.TryWriteBytes(message.AsSpan(4), (uint)payload.Length);
        BitConverter.TryWriteBytes(message.AsSpan(8), id);
        payload.CopyTo(message.AsSpan(TrackerWire.HeaderBytes));
        int sent = 0;
        fixed (byte* data = message)
        {
            byte* control = stackalloc byte[CmsgSpace(sizeof(int) * MaxFds)];
            while (sent < message.Length)
            {
                var vector = new iovec { iov_base = data + sent, iov_len = (size_t)(message.Length - sent) };
                var header = new msghdr { msg_iov = &vector, msg_iovlen = 1 };
                if (sent == 0 && fds.Length > 0)
                {
                    int space = CmsgSpace(sizeof(int) * fds.Length);
                    new Span<byte>(control, space).Clear();
                    header.msg_control = control;
                    header.msg_controllen = (socklen_t)(uint)space;
                    cmsghdr* cmsg = CMSG_FIRSTHDR(&header);
                    cmsg->cmsg_level = SOL_SOCKET;
                    cmsg->cmsg_type = SCM_RIGHTS;
                    cmsg->cmsg_len = (socklen_t)(uint)(CmsgHeaderBytes + sizeof(int) * fds.Length);
                    int* slots = (int*)CMSG_DATA(cmsg);
                    for (int i = 0; i < fds.Length; i++) slots[i] = fds[i];
                }
                ssize_t result = sendmsg(_fd, &header, MSG_NOSIGNAL);
                if (result < 0)
                {
                    if (errno == EINTR) continue;
                    throw new HostCallException("sendmsg", errno, "tracker socket");
                }
                sent += (int)result;
            }
        }
    }

    /// <summary>
    /// Receive one message: false at end of stream (the peer closed). Descriptors that came with it are
    /// returned (the caller owns them). A malformed header throws <see cref="InvalidDataException"/>.
    /// </summary>
    public bool TryReceive(out uint type, out ulong id, out byte[] payload, out int[] fds)
    {
        var fdList = new List<int>();
        Span<byte> header = stackalloc byte[TrackerWire.HeaderBytes];
        type = 0;
        id = 0;
        payload = [];
        fds = [];
        if (!ReceiveExactly(header, fdList, allowEof: true)) return false;
        type = BitConverter.ToUInt32(header);
        uint length = BitConverter.ToUInt32(header[4..]);
        id = BitConverter.ToUInt64(header[8..]);
        if (length > TrackerWire.MaxPayloadBytes)
        {
            foreach (int fd in fdList) close(fd);
            throw new InvalidDataException($"message type {type} announces {length} payload bytes, more than {TrackerWire.MaxPayloadBytes}");
        }
        payload = new byte[length];
        if (!ReceiveExactly(payload, fdList, allowEof: false))
        {
            foreach (int fd in fdList) close(fd);
            return false;
        }
        fds = fdList.ToArray();
        return true;
    }

    private bool ReceiveExactly(Span<byte> buffer, List<int> fds, bool allowEof)
    {
        int received = 0;
        byte* control = stackalloc byte[CmsgSpace(sizeof(int) * MaxFds)];
        int controlSpace = CmsgSpace(sizeof(int) * MaxFds);
        fixed (byte* data = buffer)
        {
            while (received < buffer.Length)
            {
                var vector = new iovec { iov_base = data + received, iov_len = (size_t)(buffer.Length - received) };
                var header = new msghdr { msg_iov = &vector, msg_iovlen = 1, msg_control = control, msg_controllen = (socklen_t)(uint)controlSpace };
                ssize_t result = recvmsg(_fd, &header, MSG_CMSG_CLOEXEC);
                if (result < 0)
                {
                    if (errno == EINTR) continue;
                    if (errno == ECONNRESET) return false;
                    throw new HostCallException("recvmsg", errno, "tracker socket");
                }
                for (cmsghdr* cmsg = CMSG_FIRSTHDR(&header); cmsg != null; cmsg = CMSG_NXTHDR(&header, cmsg))
                {
                    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
                    int count = ((int)(uint)cmsg->cmsg_len - CmsgHeaderBytes) / sizeof(int);
                    int* slots = (int*)CMSG_DATA(cmsg);
                    for (int i = 0; i < count; i++) fds.Add(slots[i]);
                }
                if (result == 0)
                {
                    if (received == 0 && allowEof) return false;
                    return false;
                }
                received += (int)result;
            }
        }
        return true;
    }

    /// <summary>Wait until a message (or the end of the stream) can be read, or <paramref name="otherFd"/> is readable; -1 waits forever.</summary>
    public (bool Socket, bool Other) Wait(int otherFd, int timeoutMilliseconds)
    {
        pollfd* wanted = stackalloc pollfd[2];
        wanted[0] = new pollfd { fd = _fd, events = (short)POLLIN };
        wanted[1] = new pollfd { fd = otherFd, events = (short)POLLIN };
        int ready = poll(wanted, (ulong_t)(otherFd >= 0 ? 2UL : 1UL), timeoutMilliseconds);
        if (ready <= 0) return (false, false);
        return (wanted[0].revents != 0, otherFd >= 0 && wanted[1].revents != 0);
    }

    /// <summary>Stop reading: a thread blocked reading it sees the end of the stream; sending still works.</summary>
    public void ShutdownReading()
    {
        int fd = Volatile.Read(ref _fd);
        if (fd >= 0) shutdown(fd, SHUT_RD);
    }

    public void Dispose()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0) close(fd);
    }
}
