using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using KvmSharp.Devices.Events;
using KvmSharp.Devices.Memory;
using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Fs;
using KvmSharp.Devices.Virtio.Transport;
using KvmSharp.Devices.VhostUser;
using KvmSharp.Tests.Unit.Devices.Pci;
using KvmSharp.Tests.Unit.Devices.Virtio;
using KvmSharp.Tests.Unit.Devices.Virtio.Transport;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Win32.SafeHandles;
using Xunit;
using static Tmds.Linux.LibC;

namespace KvmSharp.Tests.Unit.Devices.VhostUser;

/// <summary>
/// virtio-fs on the virtio-pci transport, driven by the Linux driver model, against a scripted vhost-user
/// back end: what reaches the back end at DRIVER_OK (features, memory table, rings at VMM addresses), that
/// the doorbells are the device's eventfds, that a back-end call becomes an MSI-X interrupt, that a reset
/// takes the rings back, and that rings outside RAM mark the device as needing a reset instead of being sent.
/// </summary>
public sealed class VirtioFsTests : IDisposable
{
    private const ulong Version1 = 1UL << 32, EventIdx = 1UL << 29, IndirectDesc = 1UL << 28, NotifyOnEmpty = 1UL << 24;
    private const ulong RamHostAddress = 0x7f12_0000_0000;

    private readonly EpollEventLoop _loop = new(NullLogger<EpollEventLoop>.Instance, "virtiofs-test");
    private readonly SafeFileHandle _ramFile = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.ReadWrite);
    private readonly ScriptedVhostUserBackend _backend;
    private readonly VirtioFs _device;
    private readonly VhostUserMemoryRegion[] _ram;

    public VirtioFsTests()
    {
        var (channel, peer) = VhostUserChannel.CreatePair();
        _backend = new ScriptedVhostUserBackend(peer, Version1 | EventIdx | IndirectDesc | NotifyOnEmpty | VhostUserFrontend.VHOST_USER_F_PROTOCOL_FEATURES);
        var frontend = new VhostUserFrontend(channel);
        frontend.Handshake();
        _ram = [new VhostUserMemoryRegion(new(0), 0x20_0000, RamHostAddress, _ramFile, 0x1000)];
        _device = new VirtioFs("hostshare", frontend, () => _ram, _loop, NullLogger<VirtioFs>.Instance);
    }

    public void Dispose()
    {
        _device.Dispose();
        _backend.Dispose();
        _loop.Dispose();
        _ramFile.Dispose();
    }

    [Fact]
    public void Config_space_holds_the_tag_and_one_request_queue_and_features_are_the_back_ends_ring_features()
    {
        Assert.Equal(VirtioDeviceType.Fs, _device.DeviceType);
        Assert.Equal(2, _device.QueueMaxSizes.Count);
        Assert.Equal(EventIdx | IndirectDesc, _device.AvailableFeatures); // NOTIFY_ON_EMPTY and PROTOCOL_FEATURES stay behind
        byte[] config = new byte[Marshal.SizeOf<virtio_fs_config>()];
        _device.ReadConfig(0, config);
        Assert.Equal("hostshare", Encoding.UTF8.GetString(config, 0, 9));
        Assert.All(config[9..36], b => Assert.Equal(0, b));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(config.AsSpan(36)));
        byte[] tail = new byte[8];
        _device.ReadConfig(36, tail);
        Assert.Equal([1, 0, 0, 0, 0, 0, 0, 0], tail);
    }

    [Fact]
    public void Driver_ok_hands_features_memory_and_rings_to_the_back_end_and_doorbells_are_the_devices_eventfds()
    {
        var pci = new PciRig();
        var registrar = new FakeNotifyRegistrar();
        var msi = new FakeMsiController();
        using var function = new VirtioPciFunction(_device, msi, new NoGuestMemory(), new FakeEventLoop(), registrar);
        var driver = new LinuxVirtioPciDriver(pci, pci.Root.Attach(function).Device);
        ulong[] doorbells = driver.InitializeToDriverOk(queueSize: 64);

        ulong features = BinaryPrimitives.ReadUInt64LittleEndian(Assert.Single(_backend.Of(VhostUserRequest.SET_FEATURES)).Payload);
        Assert.Equal(Version1 | EventIdx | IndirectDesc | VhostUserFrontend.VHOST_USER_F_PROTOCOL_FEATURES, features);
        var table = Assert.Single(_backend.Of(VhostUserRequest.SET_MEM_TABLE));
        Assert.Single(table.Files);
        var addrs = _backend.Of(VhostUserRequest.SET_VRING_ADDR).Select(m => MemoryMarshal.Read<vhost_vring_addr>(m.Payload)).ToList();
        Assert.Equal(2, addrs.Count);
        // The driver put queue i at 0x10_0000 + i*0x1_0000 (descriptors), +0x4000 (available), +0x8000 (used): VMM addresses go out.
        Assert.Equal(RamHostAddress + 0x11_0000, addrs[1].desc_user_addr);
        Assert.Equal(RamHostAddress + 0x11_4000, addrs[1].avail_user_addr);
        Assert.Equal(RamHostAddress + 0x11_8000, addrs[1].used_user_addr);
        Assert.All(_backend.Of(VhostUserRequest.SET_VRING_NUM), m => Assert.Equal(64u, BinaryPrimitives.ReadUInt32LittleEndian(m.Payload.AsSpan(4))));
        Assert.Equal(2, _backend.Of(VhostUserRequest.SET_VRING_ENABLE).Count());
        Assert.Equal(2, _device.StartedQueues);

        Assert.Equal(doorbells, registrar.ExternalDoorbells.Select(d => d.Address));
        Assert.Equal([_device.QueueDoorbell(0), _device.QueueDoorbell(1)], registrar.ExternalDoorbells.Select(d => d.EventFd));
        Assert.Empty(registrar.Registered); // no doorbell goes through the VMM's event loop

        // A guest kick signals the eventfd the back end got with SET_VRING_KICK.
        int kickFd = _backend.Of(VhostUserRequest.SET_VRING_KICK).Select(m => m.Files.Single()).Last();
        ReadCounter(kickFd); // the transport's catch-up notification after DRIVER_OK, if any
        registrar.ExternalDoorbells[1].EventFd.Signal();
        Assert.Equal(1UL, ReadCounter(kickFd));

        // The back end's call on queue 1 becomes the MSI-X vector the driver gave that queue (2).
        int callFd = _backend.Of(VhostUserRequest.SET_VRING_CALL).Select(m => m.Files.Single()).Last();
        SignalCounter(callFd);
        Assert.True(SpinWait.SpinUntil(() => msi.Vectors[2].Delivered == 1, TimeSpan.FromSeconds(10)), $"vector 2 delivered {msi.Vectors[2].Delivered}");
        Assert.Equal(1, _device.BackendCalls);

        driver.Reset();
        var stops = _backend.Of(VhostUserRequest.GET_VRING_BASE).Select(m => BinaryPrimitives.ReadUInt32LittleEndian(m.Payload)).ToList();
        Assert.Equal([0u, 1u], stops);
        Assert.Equal(0, _device.StartedQueues);

        // After the reset a late call from the back end interrupts nobody.
        SignalCounter(callFd);
        Thread.Sleep(50);
        Assert.Equal(1, msi.Vectors[2].Delivered);
    }

    [Fact]
    public void Rings_outside_guest_ram_mark_the_device_as_needing_a_reset_and_are_not_sent()
    {
        var status = new RecordingTransportStatus();
        var queues = new[]
        {
            new VirtqueueConfig(0, 64, true, new(0x1000), new(0x2000), new(0x3000)),
            new VirtqueueConfig(1, 64, true, new(0x1F_FF00), new(0x2000), new(0x3000)), // descriptors run past RAM
        };
        _device.Activate(new VirtioActivation(Version1, queues, new NoGuestMemory(), new RecordingVirtioInterrupt(), status));
        Assert.Contains("queue 1", Assert.Single(status.Reasons));
        Assert.Single(_backend.Of(VhostUserRequest.SET_VRING_ADDR)); // queue 0 only
        _device.Reset();
        Assert.Single(_backend.Of(VhostUserRequest.GET_VRING_BASE));
    }

    [Fact]
    public void A_doorbell_that_reaches_the_device_signals_the_queues_eventfd()
    {
        _device.QueueNotify(1);
        _device.QueueNotify(7); // out of range: ignored
        Assert.True(_device.QueueDoorbell(1).TryConsume(out ulong kicks));
        Assert.Equal(1UL, kicks);
        Assert.False(_device.QueueDoorbell(0).TryConsume(out _));
    }

    [Theory]
    [InlineData("path=/,tag=root", "/", "root", false)]
    [InlineData("tag=t,path=/tmp,readonly=on", "/tmp", "t", true)]
    [InlineData("path=/tmp,tag=t,readonly=off", "/tmp", "t", false)]
    public void Share_options_parse(string text, string path, string tag, bool readOnly)
    {
        Assert.True(ShareOptions.TryParse(text, out var share, out string? error), error);
        Assert.Equal(new ShareOptions(path, tag, readOnly), share);
    }

    [Theory]
    [InlineData("tag=t", "no path=")]
    [InlineData("path=/tmp", "no tag=")]
    [InlineData("path=/tmp,tag=", "no tag=")]
    [InlineData("path=/tmp,tag=a b", "space")]
    [InlineData("path=/tmp,tag=0123456789012345678901234567890123456", "37 bytes")]
    [InlineData("path=/tmp,tag=t,readonly=maybe", "readonly=maybe")]
    [InlineData("path=/tmp,tag=t,cache=none", "unknown key 'cache'")]
    [InlineData("path=/nonexistent-kvmsharp-dir,tag=t", "does not exist")]
    [InlineData("path=/etc/passwd,tag=t", "is a file")]
    public void Bad_share_options_say_what_is_wrong(string text, string expected)
    {
        Assert.False(ShareOptions.TryParse(text, out var share, out string? error));
        Assert.Null(share);
        Assert.Contains(expected, error);
    }

    private static unsafe ulong ReadCounter(int fd)
    {
        var poll = new Tmds.Linux.pollfd { fd = fd, events = POLLIN };
        if (Tmds.Linux.LibC.poll(&poll, 1, 100) <= 0) return 0;
        ulong value = 0;
        return read(fd, &value, 8) == 8 ? value : 0;
    }

    private static unsafe void SignalCounter(int fd)
    {
        ulong one = 1;
        Assert.Equal(8, (int)write(fd, &one, 8));
    }
}
