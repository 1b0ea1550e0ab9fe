namespace KvmSharp.Devices.Memory;

/// <summary>A guest-physical address, typed so that it is never mixed up with a host pointer or an offset.</summary>
public readonly record struct GuestAddress(ulong Value)
{
    /// <summary>This address plus <paramref name="bytes"/>; false when the sum wraps past 2^64.</summary>
    public bool TryAdd(ulong bytes, out GuestAddress sum)
    {
        ulong value = Value + bytes;
        sum = new GuestAddress(value);
        return value >= Value;
    }

    public override string ToString() => $"0x{Value:x}";
}
