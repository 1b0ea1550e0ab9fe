using System.Buffers.Binary;
using KvmSharp.Devices.Events;
using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Fs;
using KvmSharp.Devices.VhostUser;
using KvmSharp.Memory.Regions;
using KvmSharp.Tests.Integration.Infrastructure;
using Microsoft.Win32.SafeHandles;
using Xunit;

namespace KvmSharp.Tests.Integration.Shares;

/// <summary>
/// The vhost-user front end against the host's real virtiofsd, no guest: KvmSharp starts it on a temp
/// directory, does the handshake, hands it a memfd "guest RAM" and a request ring, and sends one FUSE_INIT
/// request through the ring as a guest driver would; virtiofsd answers in guest memory and signals the
/// call eventfd. Also: the socket's and directory's modes, no VMM descriptor leaked into virtiofsd, the
/// sandbox's read-only root for readonly=on, and a clear error for a missing virtiofsd.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class VirtiofsdHandshakeTests : IDisposable
{
    private const uint FUSE_INIT = 26;
    private const ulong RingBase = 0x10000, Descriptors = RingBase, Available = RingBase + 0x1000, Used = RingBase + 0x2000;
    private const ulong RequestBuffer = 0x20000, ReplyBuffer = 0x21000;
    private const ushort RingSize = 8;

    private readonly string _directory = Directory.CreateTempSubdirectory("kvmsharp-share-test-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [VirtiofsdFact]
    public void Handshake_mem_table_and_a_fuse_init_round_trip_through_a_ring()
    {
        using var backend = VirtiofsdBackend.Start(new ShareOptions(_directory, "hostshare"));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(backend.SocketPath));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(backend.RuntimeDirectory));
        using var frontend = new VhostUserFrontend(backend.TakeConnection());
        frontend.Handshake();
        Assert.True(frontend.HasProtocolFeatures, $"features 0x{frontend.BackendFeatures:x}");
        Assert.NotEqual(0UL, frontend.BackendFeatures & VirtioFeatureBits.VIRTIO_F_VERSION_1);
        Assert.Equal(VhostUserProtocolFeatures.REPLY_ACK, frontend.ProtocolFeatures); // every request below is acknowledged

        using var ram = GuestMemoryRegion.CreateMemfd(1 << 20, "vhost-test");
        var regions = new[] { new VhostUserMemoryRegion(new(0), ram.Size, ram.HostAddress, new SafeFileHandle(ram.FileDescriptor, ownsHandle: false), 0) };
        WriteFuseInit(ram, unique: 0x1234);
        using var kick = EventFd.Create();
        using var call = EventFd.Create();
        frontend.SetFeatures(VirtioFeatureBits.VIRTIO_F_VERSION_1);
        frontend.SetMemTable(regions);
        frontend.StartVring(1, RingSize, 0, ram.HostAddress + Descriptors, ram.HostAddress + Available, ram.HostAddress + Used, kick, call);
        kick.Signal();

        ulong deadline = (ulong)Environment.TickCount64 + 10_000;
        ushort usedIndex = 0;
        while ((ulong)Environment.TickCount64 < deadline && (usedIndex = BinaryPrimitives.ReadUInt16LittleEndian(ram.AsSpan(Used + 2, 2))) == 0)
            Thread.Sleep(5);
        Assert.True(usedIndex == 1, $"virtiofsd used {usedIndex} buffers; its output: {backend.OutputTail}");
        Assert.True(call.TryConsume(out _), "virtiofsd did not signal the call eventfd");
        var reply = ram.AsSpan(ReplyBuffer, 16 + 8);
        Assert.Equal(0, BinaryPrimitives.ReadInt32LittleEndian(reply[4..]));        // fuse_out_header.error
        Assert.Equal(0x1234UL, BinaryPrimitives.ReadUInt64LittleEndian(reply[8..])); // .unique
        Assert.Equal(7u, BinaryPrimitives.ReadUInt32LittleEndian(reply[16..]));      // fuse_init_out.major

        Assert.Equal(1, frontend.StopVring(1)); // the back end consumed one available entry
        Assert.False(backend.HasExited);
    }

    [VirtiofsdFact]
    public void Virtiofsd_inherits_no_descriptor_of_the_vmm()
    {
        using var ram = GuestMemoryRegion.CreateMemfd(1 << 20, "leak-check");
        using var eventFd = EventFd.Create();
        using var kvm = File.Exists("/dev/kvm") ? File.OpenHandle("/dev/kvm", FileMode.Open, FileAccess.ReadWrite) : null;
        using var backend = VirtiofsdBackend.Start(new ShareOptions(_directory, "leakcheck"));
        var targets = Directory.GetFiles($"/proc/{backend.ProcessId}/fd").Select(f => new FileInfo(f).LinkTarget ?? "").ToList();
        var leaked = targets.Where(t => t.StartsWith("/memfd:", StringComparison.Ordinal) || t.Contains("[eventfd]", StringComparison.Ordinal) ||
                                        t.StartsWith("anon_inode:kvm", StringComparison.Ordinal) || t == "/dev/kvm").ToList();
        Assert.True(leaked.Count == 0, $"virtiofsd holds: {string.Join(", ", targets)}");
        Assert.NotEmpty(targets);
    }

    [VirtiofsdFact]
    public void Readonly_share_runs_virtiofsd_on_a_read_only_view_of_the_directory()
    {
        using var backend = VirtiofsdBackend.Start(new ShareOptions(_directory, "roshare", ReadOnly: true));
        using var frontend = new VhostUserFrontend(backend.TakeConnection());
        frontend.Handshake(); // the sandbox is set up once the front end connected
        string mountInfo = "";
        ulong deadline = (ulong)Environment.TickCount64 + 10_000;
        // The sandbox pivots into the share, which becomes virtiofsd's "/"; its mount options must say ro.
        while ((ulong)Environment.TickCount64 < deadline && !(mountInfo = File.ReadAllText($"/proc/{backend.ProcessId}/mountinfo")).Contains(" / / ", StringComparison.Ordinal))
            Thread.Sleep(10);
        string root = mountInfo.Split('\n').FirstOrDefault(l => l.Split(' ') is { Length: > 5 } f && f[4] == "/") ?? "";
        Assert.True(root.Split(' ') is { Length: > 5 } fields && fields[5].Split(',').Contains("ro"), $"virtiofsd's root mount: '{root}'\n{mountInfo}");
        // The host's own view of the directory stays writable.
        File.WriteAllText(Path.Combine(_directory, "host-can-write"), "yes");
    }

    [Fact]
    public void A_missing_virtiofsd_is_a_clear_error_naming_the_packages()
    {
        Assert.Null(VirtiofsdBackend.Locate("/nonexistent-dir", ["/nonexistent/virtiofsd"]));
        var error = Assert.Throws<VirtiofsdException>(() => VirtiofsdBackend.Start(new ShareOptions(_directory, "t"), executable: "/nonexistent/virtiofsd"));
        Assert.Contains("qemu-system-common", error.Message);
        Assert.Contains("apt-get install virtiofsd", error.Message);
    }

    // One FUSE_INIT request as a driver posts it: a readable descriptor (fuse_in_header + fuse_init_in)
    // chained to a writable one for the reply, made available in the ring.
    private static void WriteFuseInit(GuestMemoryRegion ram, ulong unique)
    {
        const int inHeader = 40, initIn = 16;
        var request = ram.AsSpan(RequestBuffer, inHeader + initIn);
        BinaryPrimitives.WriteUInt32LittleEndian(request, inHeader + initIn);
        BinaryPrimitives.WriteUInt32LittleEndian(request[4..], FUSE_INIT);
        BinaryPrimitives.WriteUInt64LittleEndian(request[8..], unique);
        BinaryPrimitives.WriteUInt32LittleEndian(request[inHeader..], 7);       // major
        BinaryPrimitives.WriteUInt32LittleEndian(request[(inHeader + 4)..], 31); // minor
        WriteDescriptor(ram, 0, RequestBuffer, inHeader + initIn, flags: 1 /* NEXT */, next: 1);
        WriteDescriptor(ram, 1, ReplyBuffer, 4096, flags: 2 /* WRITE */, next: 0);
        var available = ram.AsSpan(Available, 6 + 2 * RingSize);
        BinaryPrimitives.WriteUInt16LittleEndian(available[4..], 0); // ring[0] = head 0
        BinaryPrimitives.WriteUInt16LittleEndian(available[2..], 1); // idx
    }

    private static void WriteDescriptor(GuestMemoryRegion ram, int index, ulong address, uint length, ushort flags, ushort next)
    {
        var descriptor = ram.AsSpan(Descriptors + (ulong)index * 16, 16);
        BinaryPrimitives.WriteUInt64LittleEndian(descriptor, address);
        BinaryPrimitives.WriteUInt32LittleEndian(descriptor[8..], length);
        BinaryPrimitives.WriteUInt16LittleEndian(descriptor[12..], flags);
        BinaryPrimitives.WriteUInt16LittleEndian(descriptor[14..], next);
    }
}
