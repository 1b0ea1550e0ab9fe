using KvmSharp.Kvm;

namespace KvmSharp.Memory.PageTracking;

/// <summary>A page-tracking call was refused; <see cref="KvmException.Errno"/> is what the kernel would return.</summary>
public sealed class PageTrackException(string operation, int errno, string detail) : KvmException(operation, errno, detail);
