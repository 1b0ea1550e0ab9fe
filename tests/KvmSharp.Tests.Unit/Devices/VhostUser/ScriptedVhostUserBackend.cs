using System.Buffers.Binary;
using System.Collections.Concurrent;
using KvmSharp.Devices.Events;
using KvmSharp.Devices.VhostUser;

namespace KvmSharp.Tests.Unit.Devices.VhostUser;

/// <summary>
/// A fake back end that answers on its own thread, as virtiofsd would: offers <see cref="Features"/> and
/// REPLY_ACK, acknowledges every request that asks, answers GET_VRING_BASE with <see cref="VringBase"/>,
/// and records every message (with the descriptors that came along, kept open for the test).
/// </summary>
internal sealed class ScriptedVhostUserBackend : IDisposable
{
    private readonly FakeVhostUserBackend _backend;
    private readonly Thread _thread;

    public ScriptedVhostUserBackend(FileDescriptorHandle peer, ulong features)
    {
        _backend = new FakeVhostUserBackend(peer);
        Features = features;
        _thread = new Thread(Serve) { IsBackground = true, Name = "fake vhost-user back end" };
        _thread.Start();
    }

    public ulong Features { get; }

    public uint VringBase { get; set; } = 7;

    public ConcurrentQueue<ReceivedMessage> Messages { get; } = new();

    public IEnumerable<ReceivedMessage> Of(VhostUserRequest request) => Messages.Where(m => m.Request == request);

    public void Dispose()
    {
        _backend.Dispose();
        _thread.Join(TimeSpan.FromSeconds(5));
        foreach (int fd in Messages.SelectMany(m => m.Files)) Tmds.Linux.LibC.close(fd);
    }

    private void Serve()
    {
        try
        {
            while (true)
            {
                var message = _backend.Receive();
                Messages.Enqueue(message);
                switch (message.Request)
                {
                    case VhostUserRequest.GET_FEATURES:
                        _backend.ReplyU64(message.Request, Features);
                        break;
                    case VhostUserRequest.GET_PROTOCOL_FEATURES:
                        _backend.ReplyU64(message.Request, (ulong)VhostUserProtocolFeatures.REPLY_ACK);
                        break;
                    case VhostUserRequest.GET_VRING_BASE:
                        byte[] state = new byte[8];
                        message.Payload.AsSpan(0, 4).CopyTo(state);
                        BinaryPrimitives.WriteUInt32LittleEndian(state.AsSpan(4), VringBase);
                        _backend.Reply(message.Request, state);
                        break;
                    default:
                        if (message.NeedsReply) _backend.ReplyU64(message.Request, 0);
                        break;
                }
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // The front end hung up.
        }
    }
}
