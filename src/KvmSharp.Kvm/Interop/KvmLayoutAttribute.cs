namespace KvmSharp.Kvm.Interop;

/// <summary>
/// Names the C type (or union member of one) that a struct mirrors, so a test can generate
/// static_asserts for its size and every field offset and compile them against &lt;linux/kvm.h&gt;.
/// </summary>
[AttributeUsage(AttributeTargets.Struct)]
internal sealed class KvmLayoutAttribute(string cType, string memberPath = "", int baseOffset = 0) : Attribute
{
    /// <summary>The C type, e.g. "struct kvm_regs".</summary>
    public string CType { get; } = cType;

    /// <summary>For a struct that mirrors a union member: its path inside <see cref="CType"/>, e.g. "io".</summary>
    public string MemberPath { get; } = memberPath;

    /// <summary>For a union member: its offset inside <see cref="CType"/>.</summary>
    public int BaseOffset { get; } = baseOffset;
}
