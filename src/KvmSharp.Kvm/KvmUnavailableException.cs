namespace KvmSharp.Kvm;

/// <summary>/dev/kvm cannot be used; <see cref="Exception.Message"/> says why and how to fix it.</summary>
public sealed class KvmUnavailableException(string operation, int errno, string detail)
    : KvmException(operation, errno, detail);
