using System.Runtime.InteropServices;
using KvmSharp.Devices.Events;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Devices.VhostUser;

/// <summary>
/// The front end's end of a vhost-user connection: a Unix stream socket (CLOEXEC) carrying messages of
/// a <see cref="VhostUserHeader"/> and a payload, with file descriptors as SCM_RIGHTS ancillary data
/// on the message's first byte. Receives wait at most <see cref="ReplyTimeout"/>, so a back end that
/// stops answering is an error, not a hang. Not thread-safe: the caller serializes exchanges.
/// </summary>
public sealed unsafe class VhostUserChannel : IDisposable
{
    /// <summary>The most descriptors one message carries (the specification's baseline of memory regions).</summary>
    public const int MaxFiles = 8;

    private readonly FileDescriptorHandle _socket;

    /// <summary>Take ownership of a connected stream socket (a test's socketpair end, or <see cref="Connect"/>'s).</summary>
    public VhostUserChannel(FileDescriptorHandle socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        _socket = socket;
    }

    /// <summary>How long a receive waits for the back end.</summary>
    public TimeSpan ReplyTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The socket (for an event loop watching for the back end hanging up).</summary>
    public SafeHandle Socket => _socket;

    /// <summary>Connect to the back end listening at <paramref name="path"/>.</summary>
    public static VhostUserChannel Connect(string path, TimeSpan? replyTimeout = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        byte[] pathBytes = System.Text.Encoding.UTF8.GetBytes(path);
        sockaddr_un address = default;
        if (pathBytes.Length >= sockaddr_un.sun_path_length)
        {
            throw new VhostUserException("connect", 0, $"socket path '{path}' is longer than {sockaddr_un.sun_path_length - 1} bytes");
        }

        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
        {
            throw new VhostUserException("socket", errno, "AF_UNIX stream socket");
        }

        var handle = new FileDescriptorHandle(fd);
        try
        {
            address.sun_family = (sa_family_t)AF_UNIX;
            for (int i = 0; i < pathBytes.Length; i++)
            {
                address.sun_path[i] = pathBytes[i];
            }

            int result;
            do
            {
                result = connect(fd, (sockaddr*)&address, (socklen_t)sizeof(sockaddr_un));
            }
            while (result < 0 && errno == EINTR);
            if (result < 0)
            {
                throw new VhostUserException("connect", errno, path);
            }

            return new VhostUserChannel(handle) { ReplyTimeout = replyTimeout ?? TimeSpan.FromSeconds(30) };
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>A connected pair of stream sockets (CLOEXEC): the front end's channel and the other end, for tests and in-process back ends.</summary>
    public static (VhostUserChannel Channel, FileDescriptorHandle Peer) CreatePair(TimeSpan? replyTimeout = null)
    {
        int* fds = stackalloc int[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
        {
            throw new VhostUserException("socketpair", errno, "AF_UNIX stream pair");
        }

        return (new VhostUserChannel(new FileDescriptorHandle(fds[0])) { ReplyTimeout = replyTimeout ?? TimeSpan.FromSeconds(30) }, new FileDescriptorHandle(fds[1]));
    }

    /// <summary>Send one message; <paramref name="files"/> (at most <see cref="MaxFiles"/>) travel with it.</summary>
    public void Send(VhostUserRequest request, uint flags, ReadOnlySpan<byte> payload, ReadOnlySpan<SafeHandle> files)
    {
        if (files.Length > MaxFiles)
        {
            throw new ArgumentOutOfRangeException(nameof(files), $"{files.Length} descriptors; a vhost-user message carries at most {MaxFiles}");
        }

        if (payload.Length > VhostUserHeader.MaxPayload)
        {
            throw new ArgumentOutOfRangeException(nameof(payload), $"{payload.Length} bytes; payloads here are at most {VhostUserHeader.MaxPayload}");
        }

        byte[] message = new byte[VhostUserHeader.Length + payload.Length];
        new VhostUserHeader((uint)request, flags | VhostUserHeader.Version, (uint)payload.Length).Write(message);
        payload.CopyTo(message.AsSpan(VhostUserHeader.Length));

        // Every handle is held for the length of the call, so none can be closed and reused underneath.
        var added = new bool[files.Length];
        bool socketAdded = false;
        try
        {
            _socket.DangerousAddRef(ref socketAdded);
            int controlLength = files.Length > 0 ? CMSG_SPACE(files.Length * sizeof(int)) : 0;
            byte* control = stackalloc byte[Math.Max(controlLength, 1)];
            new Span<byte>(control, Math.Max(controlLength, 1)).Clear();
            int sent = 0;
            fixed (byte* data = message)
            {
                while (sent < message.Length)
                {
                    var vector = new iovec { iov_base = data + sent, iov_len = (size_t)(message.Length - sent) };
                    var header = new msghdr { msg_iov = &vector, msg_iovlen = 1 };
                    if (sent == 0 && files.Length > 0)
                    {
                        header.msg_control = control;
                        header.msg_controllen = (socklen_t)controlLength;
                        cmsghdr* cmsg = CMSG_FIRSTHDR(&header);
                        cmsg->cmsg_level = SOL_SOCKET;
                        cmsg->cmsg_type = SCM_RIGHTS;
                        cmsg->cmsg_len = (socklen_t)(sizeof(cmsghdr) + files.Length * sizeof(int));
                        int* fds = (int*)CMSG_DATA(cmsg);
                        for (int i = 0; i < files.Length; i++)
                        {
                            files[i].DangerousAddRef(ref added[i]);
                            fds[i] = (int)files[i].DangerousGetHandle();
                        }
                    }

                    ssize_t result = sendmsg((int)_socket.DangerousGetHandle(), &header, MSG_NOSIGNAL);
                    if (result < 0)
                    {
                        if (errno == EINTR)
                        {
                            continue;
                        }

                        throw new VhostUserException(request.ToString(), errno, "sendmsg to the back end");
                    }

                    sent += (int)result;
                }
            }
        }
        finally
        {
            for (int i = 0; i < files.Length; i++)
            {
                if (added[i])
                {
                    files[i].DangerousRelease();
                }
            }

            if (socketAdded)
            {
                _socket.DangerousRelease();
            }
        }
    }

    /// <summary>
    /// Receive one message. Descriptors a back end sends along are closed (none of the replies KvmSharp
    /// asks for carries any). Throws when the back end hung up, the wait timed out, or the header is malformed.
    /// </summary>
    public (VhostUserHeader Header, byte[] Payload) Receive(string operation)
    {
        Span<byte> headerBytes = stackalloc byte[VhostUserHeader.Length];
        ReadExactly(headerBytes, operation);
        var header = VhostUserHeader.Read(headerBytes);
        if ((header.Flags & VhostUserHeader.VersionMask) != VhostUserHeader.Version)
        {
            throw new VhostUserException(operation, 0, $"reply has protocol version {header.Flags & VhostUserHeader.VersionMask}, expected {VhostUserHeader.Version}");
        }

        if (header.Size > VhostUserHeader.MaxPayload)
        {
            throw new VhostUserException(operation, 0, $"reply announces {header.Size} payload bytes, more than the {VhostUserHeader.MaxPayload} accepted");
        }

        byte[] payload = new byte[header.Size];
        ReadExactly(payload, operation);
        return (header, payload);
    }

    public void Dispose() => _socket.Dispose();

    private void ReadExactly(Span<byte> destination, string operation)
    {
        bool added = false;
        try
        {
            _socket.DangerousAddRef(ref added);
            int fd = (int)_socket.DangerousGetHandle();
            int read = 0;
            long deadline = Environment.TickCount64 + (long)ReplyTimeout.TotalMilliseconds;
            byte* control = stackalloc byte[CMSG_SPACE(MaxFiles * sizeof(int))];
            while (read < destination.Length)
            {
                long left = deadline - Environment.TickCount64;
                var poll = new pollfd { fd = fd, events = POLLIN };
                int ready = left > 0 ? LibC.poll(&poll, 1, (int)Math.Min(left, int.MaxValue)) : 0;
                if (ready < 0)
                {
                    if (errno == EINTR)
                    {
                        continue;
                    }

                    throw new VhostUserException(operation, errno, "poll on the back end's socket");
                }

                if (ready == 0)
                {
                    throw new VhostUserException(operation, ETIMEDOUT, $"the back end did not answer within {ReplyTimeout.TotalSeconds:0.#} s");
                }

                fixed (byte* data = destination)
                {
                    var vector = new iovec { iov_base = data + read, iov_len = (size_t)(destination.Length - read) };
                    var header = new msghdr { msg_iov = &vector, msg_iovlen = 1, msg_control = control, msg_controllen = (socklen_t)CMSG_SPACE(MaxFiles * sizeof(int)) };
                    ssize_t result = recvmsg(fd, &header, MSG_CMSG_CLOEXEC);
                    if (result < 0)
                    {
                        if (errno == EINTR || errno == EAGAIN)
                        {
                            continue;
                        }

                        throw new VhostUserException(operation, errno, "recvmsg from the back end");
                    }

                    CloseReceivedFiles(&header);
                    if (result == 0)
                    {
                        throw new VhostUserException(operation, 0, "the back end closed the connection");
                    }

                    read += (int)result;
                }
            }
        }
        finally
        {
            if (added)
            {
                _socket.DangerousRelease();
            }
        }
    }

    private static void CloseReceivedFiles(msghdr* header)
    {
        for (cmsghdr* cmsg = CMSG_FIRSTHDR(header); cmsg != null; cmsg = CMSG_NXTHDR(header, cmsg))
        {
            if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS)
            {
                int count = (int)(((uint)cmsg->cmsg_len - (uint)sizeof(cmsghdr)) / sizeof(int));
                int* fds = (int*)CMSG_DATA(cmsg);
                for (int i = 0; i < count; i++)
                {
                    close(fds[i]);
                }
            }
        }
    }
}
