using KvmSharp.Devices.Interrupts;

namespace KvmSharp.Tests.Unit.Devices.Pci;

/// <summary>Hands out <see cref="FakeMsiVector"/>s and keeps them, so tests can see what each vector was told.</summary>
internal sealed class FakeMsiController : IMsiController
{
    public List<FakeMsiVector> Vectors { get; } = [];

    public IMsiVector AllocateVector()
    {
        var vector = new FakeMsiVector(Vectors.Count);
        Vectors.Add(vector);
        return vector;
    }
}

/// <summary>Counts deliveries; like KVM's, a trigger before the first <see cref="Update"/> reaches nobody and is counted apart.</summary>
internal sealed class FakeMsiVector(int index) : IMsiVector
{
    private int _delivered;
    private int _dropped;

    public int Index { get; } = index;

    public int Delivered => Volatile.Read(ref _delivered);

    public int DroppedBeforeUpdate => Volatile.Read(ref _dropped);

    public int Updates { get; private set; }

    public ulong Address { get; private set; }

    public uint Data { get; private set; }

    public bool Disposed { get; private set; }

    public void Update(ulong messageAddress, uint messageData)
    {
        Updates++;
        Address = messageAddress;
        Data = messageData;
    }

    public void Trigger()
    {
        if (Updates == 0)
        {
            Interlocked.Increment(ref _dropped);
        }
        else
        {
            Interlocked.Increment(ref _delivered);
        }
    }

    public void Dispose() => Disposed = true;
}
