namespace KvmSharp.Kvm;

/// <summary>Receives the entries <see cref="KvmDirtyRing.Harvest{TSink}"/> takes: a packed kernel slot and a page offset in it.</summary>
public interface IDirtyGfnSink
{
    void Add(uint slot, ulong offset);
}
