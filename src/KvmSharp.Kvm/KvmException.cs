using KvmSharp.Kvm.Interop;

namespace KvmSharp.Kvm;

/// <summary>
/// A host or KVM operation failed; carries the ioctl (or syscall) name and errno. The message reads
/// "KVM_RUN failed: EINTR (errno 4, Interrupted system call): detail"; with errno 0 (a failure the
/// kernel did not report as an errno, such as a wrong API version) "OPERATION failed: detail".
/// </summary>
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

    /// <summary>The Linux errno the kernel (or a check mirroring it) returned; 0 when there was none.</summary>
    public int Errno { get; }

    public string ErrnoName => Interop.Errno.Name(Errno);

    private static string Format(string operation, int errno, string? detail)
    {
        string reason = errno == 0 ? "" : Interop.Errno.Describe(errno);
        string separator = reason.Length > 0 && detail is not null ? ": " : "";
        return $"{operation} failed: {reason}{separator}{detail}";
    }
}
