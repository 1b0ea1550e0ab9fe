using System.Buffers.Binary;
using KvmSharp.Devices.Events;
using KvmSharp.Devices.VhostUser;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Tests.Unit.Devices.VhostUser;

/// <summary>One message as the fake back end received it: the header, the payload and the descriptors that came with it.</summary>
internal sealed record ReceivedMessage(VhostUserRequest Request, uint Flags, byte[] Payload, int[] Files)
{
    public bool NeedsReply => (Flags & VhostUserHeader.NeedReplyFlag) != 0;
}

/// <summary>
/// The back end's side of a socketpair, driven by the test: reads raw messages (header, payload,
/// SCM_RIGHTS descriptors) and writes replies, so the front end's framing is checked byte by byte.
/// </summary>
internal sealed unsafe class FakeVhostUserBackend(FileDescriptorHandle socket) : IDisposable
{
    public ReceivedMessage Receive()
    {
        byte[] header = new byte[VhostUserHeader.Length];
        var files = new List<int>();
        ReadExactly(header, files);
        var parsed = VhostUserHeader.Read(header);
        byte[] payload = new byte[parsed.Size];
        ReadExactly(payload, files);
        return new ReceivedMessage((VhostUserRequest)parsed.Request, parsed.Flags, payload, files.ToArray());
    }

    public void Reply(VhostUserRequest request, ReadOnlySpan<byte> payload, uint flags = VhostUserHeader.Version | VhostUserHeader.ReplyFlag)
    {
        byte[] message = new byte[VhostUserHeader.Length + payload.Length];
        new VhostUserHeader((uint)request, flags, (uint)payload.Length).Write(message);
        payload.CopyTo(message.AsSpan(VhostUserHeader.Length));
        fixed (byte* data = message)
        {
            if (write((int)socket.DangerousGetHandle(), data, message.Length) != message.Length) throw new IOException($"write failed: errno {errno}");
        }
    }

    public void ReplyU64(VhostUserRequest request, ulong value)
    {
        byte[] payload = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(payload, value);
        Reply(request, payload);
    }

    /// <summary>Receive one request and acknowledge it when it asks for it (REPLY_ACK).</summary>
    public ReceivedMessage ReceiveAndAck(ulong status = 0)
    {
        var message = Receive();
        if (message.NeedsReply) ReplyU64(message.Request, status);
        return message;
    }

    public void Dispose() => socket.Dispose();

    private void ReadExactly(Span<byte> destination, List<int> files)
    {
        int read = 0;
        byte* control = stackalloc byte[256];
        while (read < destination.Length)
        {
            fixed (byte* data = destination)
            {
                var vector = new iovec { iov_base = data + read, iov_len = (size_t)(destination.Length - read) };
                var header = new msghdr { msg_iov = &vector, msg_iovlen = 1, msg_control = control, msg_controllen = 256 };
                ssize_t result = recvmsg((int)socket.DangerousGetHandle(), &header, MSG_CMSG_CLOEXEC);
                if (result <= 0) throw new IOException($"fake back end: recvmsg returned {result}, errno {errno}");
                for (cmsghdr* cmsg = CMSG_FIRSTHDR(&header); cmsg != null; cmsg = CMSG_NXTHDR(&header, cmsg))
                {
                    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
                    int count = (int)(((uint)cmsg->cmsg_len - (uint)sizeof(cmsghdr)) / sizeof(int));
                    for (int i = 0; i < count; i++) files.Add(((int*)CMSG_DATA(cmsg))[i]);
                }
                read += (int)result;
            }
        }
    }
}
