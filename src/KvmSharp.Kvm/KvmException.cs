using KvmSharp.Kvm.Interop;

namespace KvmSharp.Kvm;

/// <summary>A KVM operation failed; carries the ioctl (or syscall) name and errno.</summary>
public class KvmException : Exception
{
    public KvmException(string operation, int errno, string? detail = null)
        : base(Format(operation, errno, detail))
    {
        Operation = operation;
        Errno = errno;
    }

    /// <summary>The ioctl or syscall that failed, e.g. "KVM_SET_USER_MEMORY_REGION".</summary>
    public string Operation { get; }

    /// <summary>The Linux errno the kernel (or a check mirroring it) returned.</summary>
    public int Errno { get; }

    public string ErrnoName => Interop.Errno.Name(Errno);

    private static string Format(string operation, int errno, string? detail) =>
        $"{operation} failed: {Interop.Errno.Name(errno)} ({errno}){(detail is null ? "" : ": " + detail)}";
}
