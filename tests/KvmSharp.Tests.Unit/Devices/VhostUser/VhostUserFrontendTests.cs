using System.Buffers.Binary;
using System.Runtime.InteropServices;
using KvmSharp.Devices.Events;
using KvmSharp.Devices.VhostUser;
using Microsoft.Win32.SafeHandles;
using Xunit;
using static Tmds.Linux.LibC;

namespace KvmSharp.Tests.Unit.Devices.VhostUser;

/// <summary>
/// The vhost-user front end's messages against a fake back end on a socketpair: header and payload bytes,
/// the order of requests, REPLY_ACK, descriptors passed with SCM_RIGHTS (the back end uses them and sees
/// the front end's files and eventfds), and every way a back end can break the protocol.
/// </summary>
public sealed class VhostUserFrontendTests : IDisposable
{
    private const ulong Version1 = 1UL << 32, EventIdx = 1UL << 29;
    private readonly VhostUserFrontend _frontend;
    private readonly FakeVhostUserBackend _backend;

    public VhostUserFrontendTests()
    {
        var (channel, peer) = VhostUserChannel.CreatePair();
        _frontend = new VhostUserFrontend(channel);
        _backend = new FakeVhostUserBackend(peer);
    }

    public void Dispose()
    {
        _frontend.Dispose();
        _backend.Dispose();
    }

    [Fact]
    public async Task Handshake_asks_features_negotiates_only_known_protocol_features_and_claims_ownership()
    {
        var handshake = Task.Run(_frontend.Handshake);
        var get = _backend.Receive();
        Assert.Equal(VhostUserRequest.GET_FEATURES, get.Request);
        Assert.Equal(VhostUserHeader.Version, get.Flags); // version 1, no reply wanted
        Assert.Empty(get.Payload);
        _backend.ReplyU64(VhostUserRequest.GET_FEATURES, Version1 | EventIdx | VhostUserFrontend.VHOST_USER_F_PROTOCOL_FEATURES);
        Assert.Equal(VhostUserRequest.GET_PROTOCOL_FEATURES, _backend.Receive().Request);
        _backend.ReplyU64(VhostUserRequest.GET_PROTOCOL_FEATURES, (ulong)(VhostUserProtocolFeatures.REPLY_ACK | VhostUserProtocolFeatures.MQ | VhostUserProtocolFeatures.CONFIG));
        var set = _backend.Receive();
        Assert.Equal(VhostUserRequest.SET_PROTOCOL_FEATURES, set.Request);
        Assert.False(set.NeedsReply); // REPLY_ACK is not in force before the back end took this message
        Assert.Equal((ulong)VhostUserProtocolFeatures.REPLY_ACK, BinaryPrimitives.ReadUInt64LittleEndian(set.Payload));
        var owner = _backend.ReceiveAndAck();
        Assert.Equal(VhostUserRequest.SET_OWNER, owner.Request);
        Assert.True(owner.NeedsReply);
        await handshake.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(VhostUserProtocolFeatures.REPLY_ACK, _frontend.ProtocolFeatures);
        Assert.True(_frontend.HasProtocolFeatures);
    }

    [Fact]
    public async Task A_back_end_without_protocol_features_gets_no_protocol_requests_and_no_ring_enables()
    {
        var handshake = Task.Run(_frontend.Handshake);
        _backend.Receive();
        _backend.ReplyU64(VhostUserRequest.GET_FEATURES, Version1);
        var owner = _backend.Receive();
        Assert.Equal(VhostUserRequest.SET_OWNER, owner.Request);
        Assert.False(owner.NeedsReply);
        await handshake.WaitAsync(TimeSpan.FromSeconds(10));

        using var kick = EventFd.Create();
        using var call = EventFd.Create();
        var start = Task.Run(() => _frontend.StartVring(0, 64, 0, 0x1000, 0x2000, 0x3000, kick, call));
        var requests = Enumerable.Range(0, 5).Select(_ => _backend.Receive().Request).ToList();
        await start.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.DoesNotContain(VhostUserRequest.SET_VRING_ENABLE, requests);
    }

    [Fact]
    public async Task Mem_table_carries_one_descriptor_per_region_and_the_regions_in_the_payload()
    {
        await HandshakeAsync();
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "guest-ram-bytes");
            using var file = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite);
            var regions = new[]
            {
                new VhostUserMemoryRegion(new(0), 0x10000, 0x7f0000000000, file, 0),
                new VhostUserMemoryRegion(new(0x1_0000_0000), 0x20000, 0x7f1000000000, file, 0x10000),
            };
            var send = Task.Run(() => _frontend.SetMemTable(regions));
            var message = _backend.ReceiveAndAck();
            await send.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(VhostUserRequest.SET_MEM_TABLE, message.Request);
            Assert.Equal(8 + 2 * 32, message.Payload.Length);
            Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(message.Payload));
            var second = MemoryMarshal.Read<vhost_memory_region>(message.Payload.AsSpan(8 + 32));
            Assert.Equal((0x1_0000_0000UL, 0x20000UL, 0x7f1000000000UL, 0x10000UL), (second.guest_phys_addr, second.memory_size, second.userspace_addr, second.mmap_offset));
            Assert.Equal(2, message.Files.Length);
            foreach (int fd in message.Files)
            {
                // The back end reads the front end's file through the descriptor it was sent.
                byte[] buffer = new byte[15];
                Assert.Equal(15, PRead(fd, buffer));
                Assert.Equal("guest-ram-bytes", System.Text.Encoding.ASCII.GetString(buffer));
                close(fd);
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task Start_vring_sends_num_base_addr_call_kick_enable_and_the_eventfds_are_shared()
    {
        await HandshakeAsync();
        using var kick = EventFd.Create();
        using var call = EventFd.Create();
        var start = Task.Run(() => _frontend.StartVring(1, 128, 5, 0x7f00_0000_1000, 0x7f00_0000_2000, 0x7f00_0000_3000, kick, call));
        var messages = Enumerable.Range(0, 6).Select(_ => _backend.ReceiveAndAck()).ToList();
        await start.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(
            [VhostUserRequest.SET_VRING_NUM, VhostUserRequest.SET_VRING_BASE, VhostUserRequest.SET_VRING_ADDR, VhostUserRequest.SET_VRING_CALL, VhostUserRequest.SET_VRING_KICK, VhostUserRequest.SET_VRING_ENABLE],
            messages.Select(m => m.Request));
        Assert.All(messages, m => Assert.True(m.NeedsReply));
        Assert.Equal((1u, 128u), State(messages[0]));
        Assert.Equal((1u, 5u), State(messages[1]));
        var addr = MemoryMarshal.Read<vhost_vring_addr>(messages[2].Payload);
        Assert.Equal((1u, 0x7f00_0000_1000UL, 0x7f00_0000_2000UL, 0x7f00_0000_3000UL), (addr.index, addr.desc_user_addr, addr.avail_user_addr, addr.used_user_addr));
        Assert.Equal(1UL, BinaryPrimitives.ReadUInt64LittleEndian(messages[3].Payload)); // ring 1, a descriptor follows (no NOFD bit)
        Assert.Equal((1u, 1u), State(messages[5]));

        // The back end signals "call" and waits on "kick" through the descriptors it got: the same eventfds.
        int callFd = Assert.Single(messages[3].Files), kickFd = Assert.Single(messages[4].Files);
        Assert.Equal(8, WriteU64(callFd, 1));
        Assert.True(call.TryConsume(out ulong calls) && calls == 1);
        kick.Signal();
        Assert.Equal(1UL, ReadU64(kickFd));
        close(callFd);
        close(kickFd);
    }

    [Fact]
    public async Task Stop_vring_disables_then_returns_the_back_ends_base()
    {
        await HandshakeAsync();
        var stop = Task.Run(() => _frontend.StopVring(1));
        Assert.Equal((1u, 0u), State(_backend.ReceiveAndAck()));
        var get = _backend.Receive();
        Assert.Equal(VhostUserRequest.GET_VRING_BASE, get.Request);
        Assert.False(get.NeedsReply); // it has a reply of its own
        _backend.Reply(VhostUserRequest.GET_VRING_BASE, StateBytes(1, 42));
        await stop.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(42, await stop);
    }

    [Fact]
    public async Task A_refused_request_is_an_error_naming_it()
    {
        await HandshakeAsync();
        var set = Task.Run(() => _frontend.SetFeatures(Version1));
        _backend.ReceiveAndAck(status: 1);
        var error = await Assert.ThrowsAsync<VhostUserException>(() => set.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Contains("SET_FEATURES", error.Message);
    }

    [Theory]
    [InlineData("no reply flag")]
    [InlineData("wrong request")]
    [InlineData("wrong version")]
    [InlineData("short payload")]
    [InlineData("huge payload")]
    public async Task A_malformed_reply_is_an_error_not_a_hang(string fault)
    {
        var handshake = Task.Run(_frontend.Handshake);
        _backend.Receive();
        byte[] eight = new byte[8];
        switch (fault)
        {
            case "no reply flag": _backend.Reply(VhostUserRequest.GET_FEATURES, eight, VhostUserHeader.Version); break;
            case "wrong request": _backend.Reply(VhostUserRequest.GET_PROTOCOL_FEATURES, eight); break;
            case "wrong version": _backend.Reply(VhostUserRequest.GET_FEATURES, eight, 2 | VhostUserHeader.ReplyFlag); break;
            case "short payload": _backend.Reply(VhostUserRequest.GET_FEATURES, new byte[4]); break;
            case "huge payload": _backend.Reply(VhostUserRequest.GET_FEATURES, new byte[VhostUserHeader.MaxPayload + 1]); break;
        }
        await Assert.ThrowsAsync<VhostUserException>(() => handshake.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task A_back_end_that_hangs_up_or_stays_silent_is_an_error()
    {
        var handshake = Task.Run(_frontend.Handshake);
        _backend.Receive();
        _backend.Dispose();
        var error = await Assert.ThrowsAsync<VhostUserException>(() => handshake.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Contains("closed the connection", error.Message);

        var (channel, peer) = VhostUserChannel.CreatePair(TimeSpan.FromMilliseconds(200));
        using var silent = new VhostUserFrontend(channel);
        using (peer)
        {
            var timeout = Assert.Throws<VhostUserException>(silent.Handshake);
            Assert.Equal(ETIMEDOUT, timeout.Errno);
            Assert.Contains("GET_FEATURES", timeout.Message);
        }
    }

    [Fact]
    public void Requests_before_the_handshake_and_oversized_tables_are_refused()
    {
        Assert.Throws<InvalidOperationException>(() => _frontend.SetFeatures(Version1));
        using var handle = new SafeFileHandle(-1, ownsHandle: false);
        var nine = Enumerable.Range(0, 9).Select(i => new VhostUserMemoryRegion(new((ulong)i << 20), 1 << 20, 0, handle, 0)).ToList();
        Assert.Throws<ArgumentOutOfRangeException>(() => _frontend.SetMemTable(nine));
    }

    [Fact]
    public void Memory_regions_translate_only_ranges_they_hold()
    {
        using var handle = new SafeFileHandle(-1, ownsHandle: false);
        var region = new VhostUserMemoryRegion(new(0x1000), 0x2000, 0x7000_0000, handle, 0);
        Assert.True(region.TryTranslate(new(0x1800), 0x1800, out ulong host));
        Assert.Equal(0x7000_0800UL, host);
        Assert.False(region.TryTranslate(new(0x1800), 0x1801, out _));
        Assert.False(region.TryTranslate(new(0x800), 0x10, out _));
        Assert.False(region.TryTranslate(new(ulong.MaxValue - 4), 0x10, out _));
    }

    private async Task HandshakeAsync()
    {
        var handshake = Task.Run(_frontend.Handshake);
        _backend.Receive();
        _backend.ReplyU64(VhostUserRequest.GET_FEATURES, Version1 | VhostUserFrontend.VHOST_USER_F_PROTOCOL_FEATURES);
        _backend.Receive();
        _backend.ReplyU64(VhostUserRequest.GET_PROTOCOL_FEATURES, (ulong)VhostUserProtocolFeatures.REPLY_ACK);
        _backend.Receive();
        _backend.ReceiveAndAck();
        await handshake.WaitAsync(TimeSpan.FromSeconds(10));
    }

    private static unsafe int PRead(int fd, byte[] buffer)
    {
        fixed (byte* b = buffer) return (int)pread(fd, b, buffer.Length, 0);
    }

    private static unsafe int WriteU64(int fd, ulong value) => (int)write(fd, &value, 8);

    private static unsafe ulong ReadU64(int fd)
    {
        ulong value = 0;
        return read(fd, &value, 8) == 8 ? value : ulong.MaxValue;
    }

    private static (uint Index, uint Num) State(ReceivedMessage message)
    {
        var state = MemoryMarshal.Read<vhost_vring_state>(message.Payload);
        return (state.index, state.num);
    }

    private static byte[] StateBytes(uint index, uint num)
    {
        byte[] bytes = new byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, index);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), num);
        return bytes;
    }
}
