using System.Runtime.InteropServices;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Kvm;

/// <summary>Owns the /dev/kvm file descriptor: API version, capabilities, and VM creation.</summary>
public sealed unsafe class KvmSystem : IDisposable
{
    public const string DefaultPath = "/dev/kvm";
    public const int ExpectedApiVersion = 12;

    private int _fd;

    private KvmSystem(int fd, string path, int apiVersion)
    {
        _fd = fd;
        Path = path;
        ApiVersion = apiVersion;
        VcpuMmapSize = NativeIoctl.Checked(fd, KvmIoctls.KVM_GET_VCPU_MMAP_SIZE, 0);
    }

    public string Path { get; }
    public int ApiVersion { get; }
    public int VcpuMmapSize { get; }
    internal int Fd => _fd >= 0 ? _fd : throw new ObjectDisposedException(nameof(KvmSystem));

    /// <summary>Open /dev/kvm. Errors say how to fix the host (module, group, container device).</summary>
    public static KvmSystem Open(string path = DefaultPath)
    {
        int fd = Posix.Open(path, Posix.O_RDWR | Posix.O_CLOEXEC);
        if (fd < 0)
        {
            int errno = -fd;
            string hint = errno switch
            {
                Errno.ENOENT or Errno.ENODEV or Errno.ENXIO =>
                    $"{path} does not exist: load the KVM module (modprobe kvm_intel or modprobe kvm_amd), " +
                    "enable virtualization in the firmware, or in a container pass --device /dev/kvm",
                Errno.EACCES or Errno.EPERM =>
                    $"permission denied on {path}: run as root or join the kvm group " +
                    "(usermod -aG kvm $USER, then log in again); in a container pass --device /dev/kvm",
                Errno.EISDIR => $"{path} is a directory, not the KVM device: give the device node, e.g. {DefaultPath}",
                Errno.ENOTDIR => $"a component of {path} is not a directory: give the KVM device node, e.g. {DefaultPath}",
                _ => $"cannot open {path}",
            };
            throw new KvmUnavailableException("open", errno, hint);
        }

        int version = NativeIoctl.Invoke(fd, KvmIoctls.KVM_GET_API_VERSION, 0);
        if (version < 0)
        {
            Posix.Close(fd);
            throw new KvmUnavailableException("KVM_GET_API_VERSION", -version,
                $"{path} is not a KVM device: give the KVM device node, e.g. {DefaultPath}");
        }
        if (version != ExpectedApiVersion)
        {
            Posix.Close(fd);
            // Not an errno: the ioctl worked and answered a version this code does not speak.
            throw new KvmUnavailableException("KVM_GET_API_VERSION", 0,
                $"{path} reports KVM API version {version}, KvmSharp needs {ExpectedApiVersion}: the kernel is too old or too new");
        }
        return new KvmSystem(fd, path, version);
    }

    /// <summary>KVM_CHECK_EXTENSION on /dev/kvm: 0 when absent, otherwise the capability's value.</summary>
    public int CheckExtension(KvmCap capability)
    {
        int result = NativeIoctl.Invoke(Fd, KvmIoctls.KVM_CHECK_EXTENSION, (nint)capability);
        return result < 0 ? 0 : result;
    }

    /// <summary>KVM_CREATE_VM, retried on EINTR as QEMU and the selftests do.</summary>
    public KvmVm CreateVm(ulong machineType = 0)
    {
        for (int attempt = 0; ; attempt++)
        {
            int result = NativeIoctl.Invoke(Fd, KvmIoctls.KVM_CREATE_VM, (nint)machineType);
            if (result >= 0) return new KvmVm(this, result);
            if (result == -Errno.EINTR && attempt < 100) continue;
            throw new KvmException("KVM_CREATE_VM", -result);
        }
    }

    /// <summary>KVM_GET_SUPPORTED_CPUID, growing the buffer on E2BIG.</summary>
    public kvm_cpuid_entry2[] GetSupportedCpuid()
    {
        for (int capacity = 64; ; capacity *= 2)
        {
            int bytes = sizeof(kvm_cpuid2) + capacity * sizeof(kvm_cpuid_entry2);
            nint buffer = (nint)NativeMemory.AllocZeroed((nuint)bytes);
            try
            {
                ((kvm_cpuid2*)buffer)->nent = (uint)capacity;
                int result = NativeIoctl.Invoke(Fd, KvmIoctls.KVM_GET_SUPPORTED_CPUID, buffer);
                if (result == -Errno.E2BIG && capacity < 4096) continue;
                if (result < 0) throw new KvmException("KVM_GET_SUPPORTED_CPUID", -result);
                uint count = ((kvm_cpuid2*)buffer)->nent;
                return new ReadOnlySpan<kvm_cpuid_entry2>((void*)(buffer + sizeof(kvm_cpuid2)), (int)count).ToArray();
            }
            finally
            {
                NativeMemory.Free((void*)buffer);
            }
        }
    }

    /// <summary>KVM_GET_MSR_INDEX_LIST: the MSRs this KVM can save and restore.</summary>
    public uint[] GetMsrIndexList()
    {
        for (int capacity = 256; ; capacity *= 2)
        {
            int bytes = sizeof(kvm_msr_list) + capacity * sizeof(uint);
            nint buffer = (nint)NativeMemory.AllocZeroed((nuint)bytes);
            try
            {
                ((kvm_msr_list*)buffer)->nmsrs = (uint)capacity;
                int result = NativeIoctl.Invoke(Fd, KvmIoctls.KVM_GET_MSR_INDEX_LIST, buffer);
                if (result == -Errno.E2BIG && capacity < 65536) continue;
                if (result < 0) throw new KvmException("KVM_GET_MSR_INDEX_LIST", -result);
                uint count = ((kvm_msr_list*)buffer)->nmsrs;
                return new ReadOnlySpan<uint>((void*)(buffer + sizeof(kvm_msr_list)), (int)count).ToArray();
            }
            finally
            {
                NativeMemory.Free((void*)buffer);
            }
        }
    }

    public void Dispose()
    {
        Posix.Close(Interlocked.Exchange(ref _fd, -1));
    }
}
