using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;

namespace KvmSharp.Api;

/// <summary>
/// Kestrel connection middleware: a client whose uid (SO_PEERCRED) is neither this process's nor root's gets a 403
/// with the reason and is disconnected before any request is read. The socket's mode (0600) already keeps others
/// out; this also covers a socket systemd passes, whose mode KvmSharp does not choose.
/// </summary>
internal static class PeerCredentials
{
    private const int SOL_SOCKET = 1, SO_PEERCRED = 17;

    /// <summary>struct ucred { pid_t pid; uid_t uid; gid_t gid; }: the uid is the second 32-bit field.</summary>
    private const int UcredSize = 12, UidOffset = 4;

    public static Func<ConnectionDelegate, ConnectionDelegate> Middleware(uint ownUid) => next => async connection =>
    {
        var socket = connection.Features.Get<IConnectionSocketFeature>()?.Socket;
        uint? peer = socket is null ? null : PeerUid(socket);
        if (peer is { } uid && (uid == ownUid || uid == 0))
        {
            await next(connection);
            return;
        }
        string reason = peer is { } other
            ? $"uid {other} may not use this VM's API: only uid {ownUid} (the VMM's) and root may"
            : "the peer's credentials (SO_PEERCRED) could not be read";
        string body = $"{{\"fault_message\":\"{reason}\"}}";
        string response = $"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {Encoding.UTF8.GetByteCount(body)}\r\nConnection: close\r\n\r\n{body}";
        // Read the request's head first: closing with unread bytes makes the kernel reset the connection, and the
        // client would lose the answer.
        await DrainRequestHead(connection, TimeSpan.FromSeconds(1));
        await connection.Transport.Output.WriteAsync(Encoding.UTF8.GetBytes(response));
        await connection.Transport.Output.CompleteAsync();
    };

    private static async Task DrainRequestHead(ConnectionContext connection, TimeSpan limit)
    {
        using var timeout = new CancellationTokenSource(limit);
        try
        {
            while (true)
            {
                var read = await connection.Transport.Input.ReadAsync(timeout.Token);
                var buffer = read.Buffer;
                bool headEnded = buffer.Length >= 4 && Encoding.ASCII.GetString(buffer).Contains("\r\n\r\n", StringComparison.Ordinal);
                connection.Transport.Input.AdvanceTo(buffer.End);
                if (headEnded || read.IsCompleted || buffer.Length > 64 * 1024) return;
            }
        }
        catch (OperationCanceledException)
        {
            // A client that sends nothing gets the answer anyway.
        }
    }

    public static uint? PeerUid(Socket socket)
    {
        Span<byte> ucred = stackalloc byte[UcredSize];
        try
        {
            int length = socket.GetRawSocketOption(SOL_SOCKET, SO_PEERCRED, ucred);
            return length >= UidOffset + 4 ? BinaryPrimitives.ReadUInt32LittleEndian(ucred[UidOffset..]) : null;
        }
        catch (SocketException)
        {
            return null;
        }
    }
}
