using KvmSharp.Memory.Memslots;

namespace KvmSharp.Vmm.Memory;

/// <summary>Reads and writes guest-physical memory through the published memslot snapshot (address space 0).</summary>
public sealed unsafe class GuestPhysicalMemory(MemslotTable memslots)
{
    public MemslotTable Memslots { get; } = memslots;

    public void Write(ulong gpa, ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            var (pointer, available) = Locate(gpa);
            int chunk = (int)Math.Min((ulong)data.Length, available);
            data[..chunk].CopyTo(new Span<byte>((void*)pointer, chunk));
            data = data[chunk..];
            gpa += (ulong)chunk;
        }
    }

    public void Read(ulong gpa, Span<byte> data)
    {
        while (!data.IsEmpty)
        {
            var (pointer, available) = Locate(gpa);
            int chunk = (int)Math.Min((ulong)data.Length, available);
            new ReadOnlySpan<byte>((void*)pointer, chunk).CopyTo(data);
            data = data[chunk..];
            gpa += (ulong)chunk;
        }
    }

    public bool TryRead(ulong gpa, Span<byte> data)
    {
        try
        {
            Read(gpa, data);
            return true;
        }
        catch (ArgumentOutOfRangeException)
        {
            return false;
        }
    }

    public ulong ReadUInt64(ulong gpa)
    {
        ulong value;
        Read(gpa, new Span<byte>(&value, sizeof(ulong)));
        return value;
    }

    public void WriteUInt64(ulong gpa, ulong value) => Write(gpa, new ReadOnlySpan<byte>(&value, sizeof(ulong)));

    private (nint Pointer, ulong Available) Locate(ulong gpa)
    {
        if (!Memslots.Current.TryFindByGfn(0, gpa >> Memslot.PageShift, out var slot))
            throw new ArgumentOutOfRangeException(nameof(gpa), $"guest physical address 0x{gpa:x} is not backed by any memslot");
        return ((nint)slot.HostAddressOf(gpa), slot.GuestPhysAddr + slot.Size - gpa);
    }
}
