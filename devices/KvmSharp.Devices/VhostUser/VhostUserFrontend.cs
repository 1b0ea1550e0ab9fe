using System.Buffers.Binary;
using System.Runtime.InteropServices;
using KvmSharp.Devices.Events;

namespace KvmSharp.Devices.VhostUser;

/// <summary>
/// A vhost-user front end (QEMU's docs/interop/vhost-user.rst): the VMM side of a device whose queues a
/// separate back-end process serves. Generic: virtio-fs uses it now; a vhost-user-blk or -net would use
/// the same calls. <see cref="Handshake"/> learns the back end's features and claims it; once the driver
/// is ready, <see cref="SetFeatures"/>, <see cref="SetMemTable"/> and one <see cref="StartVring"/> per
/// queue hand it guest memory (memfd regions) and the rings, with the queue's kick eventfd (the guest's
/// doorbell) and call eventfd (its interrupt); <see cref="StopVring"/> takes a ring back. With REPLY_ACK
/// negotiated every request that has no reply of its own is acknowledged, so a refusal is an error at
/// the request that caused it. Thread-safe: exchanges are serialized.
/// </summary>
public sealed class VhostUserFrontend : IDisposable
{
    /// <summary>Feature bit 30: the back end speaks GET/SET_PROTOCOL_FEATURES (never a virtio feature).</summary>
    public const ulong VHOST_USER_F_PROTOCOL_FEATURES = 1UL << 30;

    /// <summary>Bit 8 of a SET_VRING_KICK/CALL payload: no descriptor is sent.</summary>
    public const ulong VHOST_USER_VRING_NOFD_MASK = 1UL << 8;

    /// <summary>The protocol features KvmSharp uses when offered.</summary>
    public const VhostUserProtocolFeatures Wanted = VhostUserProtocolFeatures.REPLY_ACK;

    private readonly VhostUserChannel _channel;
    private readonly Lock _lock = new();
    private bool _handshaken;

    /// <param name="channel">The connection; the front end owns it from now on.</param>
    public VhostUserFrontend(VhostUserChannel channel)
    {
        ArgumentNullException.ThrowIfNull(channel);
        _channel = channel;
    }

    /// <summary>Virtio and vhost-user feature bits the back end offered (GET_FEATURES).</summary>
    public ulong BackendFeatures { get; private set; }

    /// <summary>The protocol features both sides use (empty when the back end lacks VHOST_USER_F_PROTOCOL_FEATURES).</summary>
    public VhostUserProtocolFeatures ProtocolFeatures { get; private set; }

    /// <summary>Whether the back end speaks protocol features, so rings start disabled and need SET_VRING_ENABLE.</summary>
    public bool HasProtocolFeatures => (BackendFeatures & VHOST_USER_F_PROTOCOL_FEATURES) != 0;

    /// <summary>The connection's socket (to watch for the back end hanging up).</summary>
    public SafeHandle Socket => _channel.Socket;

    /// <summary>GET_FEATURES, GET/SET_PROTOCOL_FEATURES (when offered), SET_OWNER.</summary>
    public void Handshake()
    {
        lock (_lock)
        {
            BackendFeatures = GetU64(VhostUserRequest.GET_FEATURES);
            if (HasProtocolFeatures)
            {
                var offered = (VhostUserProtocolFeatures)GetU64(VhostUserRequest.GET_PROTOCOL_FEATURES);
                var use = offered & Wanted;
                // Nothing is acknowledged yet: REPLY_ACK only applies once the back end has taken this message.
                SendU64(VhostUserRequest.SET_PROTOCOL_FEATURES, (ulong)use, ack: false);
                ProtocolFeatures = use;
            }

            Request(VhostUserRequest.SET_OWNER, []);
            _handshaken = true;
        }
    }

    /// <summary>SET_FEATURES: the virtio features the driver accepted (plus VHOST_USER_F_PROTOCOL_FEATURES when the back end offered it).</summary>
    public void SetFeatures(ulong virtioFeatures)
    {
        lock (_lock)
        {
            CheckHandshaken();
            ulong features = virtioFeatures | (BackendFeatures & VHOST_USER_F_PROTOCOL_FEATURES);
            SendU64(VhostUserRequest.SET_FEATURES, features, ack: true);
        }
    }

    /// <summary>SET_MEM_TABLE: guest RAM, each region with its file (a memfd) and offset in it.</summary>
    public void SetMemTable(IReadOnlyList<VhostUserMemoryRegion> regions)
    {
        ArgumentNullException.ThrowIfNull(regions);
        if (regions.Count is 0 or > VhostUserChannel.MaxFiles)
        {
            throw new ArgumentOutOfRangeException(nameof(regions), $"{regions.Count} memory regions; a vhost-user memory table holds 1 to {VhostUserChannel.MaxFiles}");
        }

        byte[] payload = EncodeMemTable(regions);
        var files = new SafeHandle[regions.Count];
        for (int i = 0; i < files.Length; i++)
        {
            files[i] = regions[i].File;
        }

        lock (_lock)
        {
            CheckHandshaken();
            Request(VhostUserRequest.SET_MEM_TABLE, payload, files);
        }
    }

    /// <summary>
    /// Hand ring <paramref name="index"/> to the back end: its size, first available index, addresses (VMM
    /// virtual addresses: see <see cref="VhostUserMemoryRegion.TryTranslate"/>), call eventfd, then kick
    /// eventfd, and enable it. The call goes first so the back end has it before a kick can make it use the ring.
    /// </summary>
    public void StartVring(uint index, ushort size, ushort baseIndex, ulong descriptorTable, ulong availableRing, ulong usedRing, EventFd kick, EventFd call)
    {
        ArgumentNullException.ThrowIfNull(kick);
        ArgumentNullException.ThrowIfNull(call);
        lock (_lock)
        {
            CheckHandshaken();
            Request(VhostUserRequest.SET_VRING_NUM, EncodeState(index, size));
            Request(VhostUserRequest.SET_VRING_BASE, EncodeState(index, baseIndex));
            Request(VhostUserRequest.SET_VRING_ADDR, EncodeAddr(new vhost_vring_addr
            {
                index = index,
                desc_user_addr = descriptorTable,
                avail_user_addr = availableRing,
                used_user_addr = usedRing,
            }));
            Request(VhostUserRequest.SET_VRING_CALL, EncodeU64(index), [call]);
            Request(VhostUserRequest.SET_VRING_KICK, EncodeU64(index), [kick]);
            if (HasProtocolFeatures)
            {
                Request(VhostUserRequest.SET_VRING_ENABLE, EncodeState(index, 1));
            }
        }
    }

    /// <summary>Take ring <paramref name="index"/> back (disable, then GET_VRING_BASE, which stops it); returns the back end's next available index.</summary>
    public ushort StopVring(uint index)
    {
        lock (_lock)
        {
            CheckHandshaken();
            if (HasProtocolFeatures)
            {
                Request(VhostUserRequest.SET_VRING_ENABLE, EncodeState(index, 0));
            }

            _channel.Send(VhostUserRequest.GET_VRING_BASE, 0, EncodeState(index, 0), []);
            byte[] reply = ReceiveReply(VhostUserRequest.GET_VRING_BASE, sizeof(uint) * 2);
            uint replyIndex = BinaryPrimitives.ReadUInt32LittleEndian(reply);
            if (replyIndex != index)
            {
                throw new VhostUserException(nameof(VhostUserRequest.GET_VRING_BASE), 0, $"reply is for ring {replyIndex}, asked for ring {index}");
            }

            return (ushort)BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(4));
        }
    }

    public void Dispose() => _channel.Dispose();

    internal static byte[] EncodeMemTable(IReadOnlyList<VhostUserMemoryRegion> regions)
    {
        // u32 nregions, u32 padding, then the regions in use (as QEMU sends it: the size covers only those).
        int regionSize = Marshal.SizeOf<vhost_memory_region>();
        byte[] payload = new byte[8 + regions.Count * regionSize];
        BinaryPrimitives.WriteUInt32LittleEndian(payload, (uint)regions.Count);
        for (int i = 0; i < regions.Count; i++)
        {
            var region = new vhost_memory_region
            {
                guest_phys_addr = regions[i].GuestAddress.Value,
                memory_size = regions[i].Size,
                userspace_addr = regions[i].HostAddress,
                mmap_offset = regions[i].FileOffset,
            };
            MemoryMarshal.Write(payload.AsSpan(8 + i * regionSize), in region);
        }

        return payload;
    }

    private static byte[] EncodeState(uint index, uint num)
    {
        var state = new vhost_vring_state { index = index, num = num };
        byte[] payload = new byte[Marshal.SizeOf<vhost_vring_state>()];
        MemoryMarshal.Write(payload, in state);
        return payload;
    }

    private static byte[] EncodeAddr(vhost_vring_addr addr)
    {
        byte[] payload = new byte[Marshal.SizeOf<vhost_vring_addr>()];
        MemoryMarshal.Write(payload, in addr);
        return payload;
    }

    private static byte[] EncodeU64(ulong value)
    {
        byte[] payload = new byte[sizeof(ulong)];
        BinaryPrimitives.WriteUInt64LittleEndian(payload, value);
        return payload;
    }

    private void CheckHandshaken()
    {
        if (!_handshaken)
        {
            throw new InvalidOperationException("vhost-user: Handshake must come first");
        }
    }

    private ulong GetU64(VhostUserRequest request)
    {
        _channel.Send(request, 0, [], []);
        return BinaryPrimitives.ReadUInt64LittleEndian(ReceiveReply(request, sizeof(ulong)));
    }

    private void SendU64(VhostUserRequest request, ulong value, bool ack) =>
        Request(request, EncodeU64(value), [], ack);

    private void Request(VhostUserRequest request, byte[] payload, ReadOnlySpan<SafeHandle> files = default, bool ack = true)
    {
        bool needReply = ack && (ProtocolFeatures & VhostUserProtocolFeatures.REPLY_ACK) != 0;
        _channel.Send(request, needReply ? VhostUserHeader.NeedReplyFlag : 0, payload, files);
        if (needReply)
        {
            ulong status = BinaryPrimitives.ReadUInt64LittleEndian(ReceiveReply(request, sizeof(ulong)));
            if (status != 0)
            {
                throw new VhostUserException(request.ToString(), 0, $"the back end refused it (status {status})");
            }
        }
    }

    private byte[] ReceiveReply(VhostUserRequest request, int expectedSize)
    {
        var (header, payload) = _channel.Receive(request.ToString());
        if ((header.Flags & VhostUserHeader.ReplyFlag) == 0)
        {
            throw new VhostUserException(request.ToString(), 0, $"expected a reply, got a message without the reply flag (request {header.Request})");
        }

        if (header.Request != (uint)request)
        {
            throw new VhostUserException(request.ToString(), 0, $"the reply is for request {header.Request}, not {(uint)request}");
        }

        if (payload.Length != expectedSize)
        {
            throw new VhostUserException(request.ToString(), 0, $"the reply has {payload.Length} payload bytes, expected {expectedSize}");
        }

        return payload;
    }
}
