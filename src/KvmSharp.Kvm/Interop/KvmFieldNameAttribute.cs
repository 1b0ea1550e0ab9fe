namespace KvmSharp.Kvm.Interop;

/// <summary>The C member a field stands for, where C# cannot use the same name (an anonymous union).</summary>
[AttributeUsage(AttributeTargets.Field)]
internal sealed class KvmFieldNameAttribute(string cName) : Attribute
{
    public string CName { get; } = cName;
}
