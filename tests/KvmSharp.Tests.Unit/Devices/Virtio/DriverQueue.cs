using System.Buffers.Binary;
using KvmSharp.Devices.Memory;
using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Queues;

namespace KvmSharp.Tests.Unit.Devices.Virtio;

/// <summary>
/// The driver's side of a split virtqueue in <see cref="FakeGuestMemory"/>, written by hand from the
/// virtio spec: lays out the rings, writes descriptors, publishes heads, reads the used ring.
/// </summary>
internal sealed class DriverQueue
{
    private readonly FakeGuestMemory _memory;
    private ushort _nextDescriptor;

    public DriverQueue(FakeGuestMemory memory, ushort size, ulong descriptors, ulong avail, ulong used, int index = 0)
    {
        _memory = memory;
        Size = size;
        Descriptors = descriptors;
        Avail = avail;
        Used = used;
        Index = index;
    }

    /// <summary>Rings at the start of RAM: descriptors at Base, avail after them, used at the next 4 KiB boundary after that.</summary>
    public static DriverQueue AtStart(FakeGuestMemory memory, ushort size)
    {
        ulong descriptors = memory.Base;
        ulong avail = descriptors + 16UL * size;
        ulong used = (avail + 6 + 2UL * size + 4095) & ~4095UL;
        return new DriverQueue(memory, size, descriptors, avail, used);
    }

    public ushort Size { get; }

    public ulong Descriptors { get; }

    public ulong Avail { get; }

    public ulong Used { get; }

    public int Index { get; }

    /// <summary>The end of the rings: buffers can go from here.</summary>
    public ulong End => Used + 6 + 8UL * Size;

    public ushort AvailIdx
    {
        get => BinaryPrimitives.ReadUInt16LittleEndian(_memory.At(Avail + 2, 2));
        set => BinaryPrimitives.WriteUInt16LittleEndian(_memory.At(Avail + 2, 2), value);
    }

    public ushort AvailFlags
    {
        set => BinaryPrimitives.WriteUInt16LittleEndian(_memory.At(Avail, 2), value);
    }

    public ushort UsedEvent
    {
        set => BinaryPrimitives.WriteUInt16LittleEndian(_memory.At(Avail + 4 + 2UL * Size, 2), value);
    }

    public ushort UsedIdx
    {
        get => BinaryPrimitives.ReadUInt16LittleEndian(_memory.At(Used + 2, 2));
        set => BinaryPrimitives.WriteUInt16LittleEndian(_memory.At(Used + 2, 2), value);
    }

    public ushort AvailEvent => BinaryPrimitives.ReadUInt16LittleEndian(_memory.At(Used + 4 + 8UL * Size, 2));

    public VirtqueueConfig Config => new(Index, Size, true, new GuestAddress(Descriptors), new GuestAddress(Avail), new GuestAddress(Used));

    public (uint Id, uint Length) UsedElement(ushort slot)
    {
        var element = _memory.At(Used + 4 + 8UL * (ushort)(slot % Size), 8);
        return (BinaryPrimitives.ReadUInt32LittleEndian(element), BinaryPrimitives.ReadUInt32LittleEndian(element[4..]));
    }

    public void WriteDescriptor(ulong table, int index, ulong address, uint length, ushort flags, ushort next)
    {
        var raw = _memory.At(table + 16UL * (ulong)index, 16);
        BinaryPrimitives.WriteUInt64LittleEndian(raw, address);
        BinaryPrimitives.WriteUInt32LittleEndian(raw[8..], length);
        BinaryPrimitives.WriteUInt16LittleEndian(raw[12..], flags);
        BinaryPrimitives.WriteUInt16LittleEndian(raw[14..], next);
    }

    public void WriteDescriptor(int index, ulong address, uint length, ushort flags, ushort next)
        => WriteDescriptor(Descriptors, index, address, length, flags, next);

    /// <summary>Put <paramref name="head"/> in the next avail slot and publish it.</summary>
    public void Publish(ushort head)
    {
        ushort idx = AvailIdx;
        BinaryPrimitives.WriteUInt16LittleEndian(_memory.At(Avail + 4 + 2UL * (ushort)(idx % Size), 2), head);
        AvailIdx = (ushort)(idx + 1);
    }

    /// <summary>Write a chain of direct descriptors (taken round-robin from the table) and publish it; returns its head.</summary>
    public ushort AddChain(params (ulong Address, uint Length, bool Writable)[] buffers)
    {
        ushort head = _nextDescriptor;
        for (int i = 0; i < buffers.Length; i++)
        {
            ushort index = (ushort)((head + i) % Size);
            bool last = i == buffers.Length - 1;
            ushort flags = (ushort)((buffers[i].Writable ? VringFlags.VRING_DESC_F_WRITE : 0) | (last ? 0 : VringFlags.VRING_DESC_F_NEXT));
            WriteDescriptor(index, buffers[i].Address, buffers[i].Length, flags, (ushort)((index + 1) % Size));
        }

        _nextDescriptor = (ushort)((head + buffers.Length) % Size);
        Publish(head);
        return head;
    }

    /// <summary>Write an indirect table at <paramref name="table"/> and a head descriptor pointing to it; publish; returns the head.</summary>
    public ushort AddIndirectChain(ulong table, params (ulong Address, uint Length, bool Writable)[] buffers)
    {
        for (int i = 0; i < buffers.Length; i++)
        {
            bool last = i == buffers.Length - 1;
            ushort flags = (ushort)((buffers[i].Writable ? VringFlags.VRING_DESC_F_WRITE : 0) | (last ? 0 : VringFlags.VRING_DESC_F_NEXT));
            WriteDescriptor(table, i, buffers[i].Address, buffers[i].Length, flags, (ushort)(i + 1));
        }

        ushort head = _nextDescriptor;
        WriteDescriptor(head, table, (uint)(16 * buffers.Length), VringFlags.VRING_DESC_F_INDIRECT, 0);
        _nextDescriptor = (ushort)((head + 1) % Size);
        Publish(head);
        return head;
    }
}
