namespace KvmSharp.Devices.Virtio.Queues;

/// <summary>
/// Marks a struct that mirrors a C struct of a virtio uAPI header, so the layout test can generate
/// static_asserts for its size and every field's offset (field names are the C names).
/// </summary>
[AttributeUsage(AttributeTargets.Struct)]
public sealed class VirtioLayoutAttribute(string header, string cType, bool sizeIsMinimum = false) : Attribute
{
    /// <summary>The header that declares it, e.g. "linux/virtio_ring.h".</summary>
    public string Header { get; } = header;

    /// <summary>The C type, e.g. "struct vring_desc".</summary>
    public string CType { get; } = cType;

    /// <summary>The C struct may be longer in newer headers (fields appended); assert only that it is at least this size.</summary>
    public bool SizeIsMinimum { get; } = sizeIsMinimum;
}
