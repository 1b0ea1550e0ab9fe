namespace KvmSharp.Devices.Virtio.Queues;

/// <summary>The C member a field mirrors when its C# name cannot be the C name (a nested struct member, an array element).</summary>
[AttributeUsage(AttributeTargets.Field)]
public sealed class VirtioFieldNameAttribute(string cName) : Attribute
{
    public string CName { get; } = cName;
}
