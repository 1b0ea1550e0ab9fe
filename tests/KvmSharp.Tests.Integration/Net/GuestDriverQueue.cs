using System.Buffers.Binary;
using KvmSharp.Devices.Memory;
using KvmSharp.Devices.Virtio;

namespace KvmSharp.Tests.Integration.Net;

/// <summary>The driver's side of a split virtqueue in real guest RAM (through <see cref="IGuestMemory"/>), written from the virtio spec.</summary>
internal sealed class GuestDriverQueue(IGuestMemory memory, int index, ushort size, ulong descriptors, ulong avail, ulong used)
{
    private ushort _nextDescriptor;

    public VirtqueueConfig Config => new(index, size, true, new GuestAddress(descriptors), new GuestAddress(avail), new GuestAddress(used));

    public ushort UsedIdx => ReadU16(used + 2);

    public (uint Id, uint Length) UsedElement(ushort slot)
    {
        Span<byte> element = stackalloc byte[8];
        Check(memory.TryRead(new GuestAddress(used + 4 + 8UL * (ushort)(slot % size)), element));
        return (BinaryPrimitives.ReadUInt32LittleEndian(element), BinaryPrimitives.ReadUInt32LittleEndian(element[4..]));
    }

    /// <summary>One direct descriptor per buffer, chained; published at once.</summary>
    public ushort AddChain(params (ulong Address, uint Length, bool Writable)[] buffers)
    {
        ushort head = _nextDescriptor;
        Span<byte> raw = stackalloc byte[16];
        for (int i = 0; i < buffers.Length; i++)
        {
            ushort at = (ushort)((head + i) % size);
            bool last = i == buffers.Length - 1;
            BinaryPrimitives.WriteUInt64LittleEndian(raw, buffers[i].Address);
            BinaryPrimitives.WriteUInt32LittleEndian(raw[8..], buffers[i].Length);
            BinaryPrimitives.WriteUInt16LittleEndian(raw[12..], (ushort)((buffers[i].Writable ? 2 : 0) | (last ? 0 : 1)));
            BinaryPrimitives.WriteUInt16LittleEndian(raw[14..], (ushort)((at + 1) % size));
            Check(memory.TryWrite(new GuestAddress(descriptors + 16UL * at), raw));
        }

        _nextDescriptor = (ushort)((head + buffers.Length) % size);
        ushort idx = ReadU16(avail + 2);
        WriteU16(avail + 4 + 2UL * (ushort)(idx % size), head);
        WriteU16(avail + 2, (ushort)(idx + 1));
        return head;
    }

    private ushort ReadU16(ulong address)
    {
        Span<byte> raw = stackalloc byte[2];
        Check(memory.TryRead(new GuestAddress(address), raw));
        return BinaryPrimitives.ReadUInt16LittleEndian(raw);
    }

    private void WriteU16(ulong address, ushort value)
    {
        Span<byte> raw = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(raw, value);
        Check(memory.TryWrite(new GuestAddress(address), raw));
    }

    private static void Check(bool ok)
    {
        if (!ok) throw new InvalidOperationException("the test's driver queue lies outside guest RAM");
    }
}
