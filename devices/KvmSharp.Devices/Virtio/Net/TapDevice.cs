using System.Runtime.InteropServices;
using System.Text;
using KvmSharp.Devices.Events;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Devices.Virtio.Net;

/// <summary>
/// An existing tap interface opened through /dev/net/tun as IFF_TAP | IFF_NO_PI | IFF_VNET_HDR with a
/// 12-byte vnet header (virtio_net_hdr_v1), non-blocking. It never creates an interface: a missing
/// tap is an error (<c>ip tuntap add dev NAME mode tap</c> creates one). At open it probes the receive
/// offloads the tap accepts, then turns them off until a driver negotiates them.
/// </summary>
public sealed unsafe class TapDevice : INetBackend
{
    public const string TunDevicePath = "/dev/net/tun";

    /// <summary>The offloads KvmSharp may ask for, richest first; the first set the tap accepts is what it supports.</summary>
    private static readonly uint[] OffloadProbes =
    [
        TunIoctls.TUN_F_CSUM | TunIoctls.TUN_F_TSO4 | TunIoctls.TUN_F_TSO6 | TunIoctls.TUN_F_TSO_ECN,
        TunIoctls.TUN_F_CSUM | TunIoctls.TUN_F_TSO4 | TunIoctls.TUN_F_TSO6,
        TunIoctls.TUN_F_CSUM,
    ];

    private readonly FileDescriptorHandle _fd;

    private TapDevice(string name, FileDescriptorHandle fd, uint supportedOffloads, int mtu)
    {
        Name = name;
        _fd = fd;
        SupportedOffloads = supportedOffloads;
        Mtu = mtu;
    }

    public string Name { get; }

    public SafeHandle Handle => _fd;

    public uint SupportedOffloads { get; }

    public int Mtu { get; }

    /// <summary>Whether <paramref name="name"/> can be an interface name (1 to 15 bytes, no '/', ':' or white space; not "." or "..").</summary>
    public static bool IsValidName(string name)
        => name.Length is > 0 and < ifreq.IFNAMSIZ && name is not ("." or "..")
           && Encoding.UTF8.GetByteCount(name) < ifreq.IFNAMSIZ
           && !name.Any(c => c == '/' || c == ':' || char.IsWhiteSpace(c) || char.IsControl(c));

    /// <summary>Open the tap <paramref name="name"/>. Throws <see cref="TapException"/> naming the problem and the fix.</summary>
    public static TapDevice Open(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!IsValidName(name))
            throw new TapException(TapError.Missing, name, "is not an interface name", 0, "give 1 to 15 characters without '/', ':' or spaces");
        // Looked up through a socket, so it is the calling thread's network namespace (as the tap's will be), not sysfs's.
        if (TunIoctls.if_nametoindex(name) == 0)
            throw new TapException(TapError.Missing, name, "no such network interface", 0, $"create it first: ip tuntap add dev {name} mode tap [user USER]");

        int fd;
        fixed (byte* path = "/dev/net/tun\0"u8)
        {
            fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        }

        if (fd < 0)
        {
            int error = errno;
            if (error == EACCES || error == EPERM)
                throw new TapException(TapError.AccessDenied, name, $"open({TunDevicePath})", error, $"give this user read-write access to {TunDevicePath}");
            throw new TapException(TapError.HostUnsupported, name, $"open({TunDevicePath})", error,
                error == ENOENT || error == ENODEV || error == ENXIO ? "load the tun module (modprobe tun) and create /dev/net/tun" : "check the host's tun driver");
        }

        var handle = new FileDescriptorHandle(fd);
        try
        {
            var request = default(ifreq);
            byte[] bytes = Encoding.UTF8.GetBytes(name);
            for (int i = 0; i < bytes.Length; i++) request.ifr_name[i] = bytes[i];
            request.ifr_flags = TunIoctls.IFF_TAP | TunIoctls.IFF_NO_PI | TunIoctls.IFF_VNET_HDR;
            if (TunIoctls.ioctl(fd, TunIoctls.TUNSETIFF, (nint)(&request)) != 0)
            {
                int error = Marshal.GetLastPInvokeError();
                if (error == EPERM || error == EACCES)
                    throw new TapException(TapError.AccessDenied, name, "ioctl(TUNSETIFF)", error,
                        $"run as root (CAP_NET_ADMIN) or create the tap for this user: ip tuntap add dev {name} mode tap user {Environment.UserName}");
                if (error == EBUSY)
                    throw new TapException(TapError.Busy, name, "ioctl(TUNSETIFF)", error, "another process (another VM?) has the tap open; give each VM its own tap");
                if (error == EINVAL)
                    throw new TapException(TapError.NotATap, name, "is not a single-queue tap", 0,
                        $"it is a tun, not a tun/tap interface, or a tap made with multi_queue; create a tap with ip tuntap add dev TAP mode tap");
                throw new TapException(TapError.HostUnsupported, name, "ioctl(TUNSETIFF)", error, "check the host's tun driver");
            }

            int headerSize = virtio_net_hdr_v1.Size;
            if (TunIoctls.ioctl(fd, TunIoctls.TUNSETVNETHDRSZ, (nint)(&headerSize)) != 0)
                throw new TapException(TapError.HostUnsupported, name, "ioctl(TUNSETVNETHDRSZ, 12)", Marshal.GetLastPInvokeError(), "the host's tun driver is too old for virtio 1.x headers");

            uint supported = 0;
            foreach (uint probe in OffloadProbes)
            {
                uint value = probe;
                if (TunIoctls.ioctl(fd, TunIoctls.TUNSETOFFLOAD, (nint)value) == 0)
                {
                    supported = value;
                    break;
                }
            }

            // Nothing partial or segmented reaches the VMM until a driver asks for it.
            if (TunIoctls.ioctl(fd, TunIoctls.TUNSETOFFLOAD, 0) != 0)
                throw new TapException(TapError.HostUnsupported, name, "ioctl(TUNSETOFFLOAD, 0)", Marshal.GetLastPInvokeError(), "check the host's tun driver");

            return new TapDevice(name, handle, supported, ReadMtu(request));
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    public bool TrySetOffloads(uint offloads, out int error)
    {
        bool added = false;
        try
        {
            _fd.DangerousAddRef(ref added);
            if (TunIoctls.ioctl((int)_fd.DangerousGetHandle(), TunIoctls.TUNSETOFFLOAD, (nint)offloads) == 0)
            {
                error = 0;
                return true;
            }

            error = Marshal.GetLastPInvokeError();
            return false;
        }
        finally
        {
            if (added) _fd.DangerousRelease();
        }
    }

    public nint Receive(iovec* vectors, int count) => Transfer(vectors, count, write: false);

    public nint Send(iovec* vectors, int count) => Transfer(vectors, count, write: true);

    public void Dispose() => _fd.Dispose();

    private nint Transfer(iovec* vectors, int count, bool write)
    {
        bool added = false;
        try
        {
            _fd.DangerousAddRef(ref added);
            int fd = (int)_fd.DangerousGetHandle();
            while (true)
            {
                nint done = write ? TunIoctls.writev(fd, vectors, count) : TunIoctls.readv(fd, vectors, count);
                if (done >= 0) return done;
                int error = Marshal.GetLastPInvokeError();
                if (error == EINTR) continue;
                return error == EAGAIN ? 0 : -error;
            }
        }
        finally
        {
            if (added) _fd.DangerousRelease();
        }
    }

    // SIOCGIFMTU on a datagram socket (same namespace as the tap); 1500 when the host will not say.
    private static int ReadMtu(ifreq request)
    {
        int socketFd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (socketFd < 0) return 1500;
        try
        {
            request.ifr_flags = 0;
            if (TunIoctls.ioctl(socketFd, TunIoctls.SIOCGIFMTU, (nint)(&request)) != 0) return 1500;
            int mtu = request.ifr_mtu;
            return mtu is >= 68 and <= 65535 ? mtu : 1500;
        }
        finally
        {
            close(socketFd);
        }
    }
}
