using KvmSharp.Memory.Regions;
using KvmSharp.Vmm.Machine;

namespace KvmSharp.Vmm.Trackers.Remote;

/// <summary>One guest RAM slot as a tracker maps it: [Gpa, Gpa + Size) is memfd <see cref="FdIndex"/> from <see cref="FdOffset"/>.</summary>
public readonly record struct GuestMemoryTableEntry(ulong Gpa, ulong Size, ulong FdOffset, int FdIndex, int AddressSpace, bool ReadOnly);

/// <summary>The guest memory table the HELLO message carries, and the memfds behind it, read from a VM's user memslots.</summary>
public sealed record GuestMemoryTable(IReadOnlyList<GuestMemoryTableEntry> Entries, IReadOnlyList<int> Fds)
{
    /// <summary>The VM's table; throws when some RAM is not memfd-backed (it could not be shared).</summary>
    public static GuestMemoryTable Of(VirtualMachine vm)
    {
        var regions = vm.RamRegions;
        var fds = new List<int>();
        var entries = new List<GuestMemoryTableEntry>();
        foreach (var slot in vm.Memslots.Current.AllSlots().OrderBy(s => s.AddressSpace).ThenBy(s => s.GuestPhysAddr))
        {
            GuestMemoryRegion? region = regions.FirstOrDefault(r => slot.HostAddress >= r.HostAddress && slot.HostAddress - r.HostAddress < r.Size);
            if (region is null) continue; // not guest RAM KvmSharp allocated (a test's own mapping): nothing to share
            if (region.FileDescriptor < 0)
                throw new InvalidOperationException($"guest RAM region '{region.Name}' is anonymous memory, which a tracker cannot map: back guest RAM with a memfd (--memfd, VmConfig.MemfdBacking)");
            int index = fds.IndexOf(region.FileDescriptor);
            if (index < 0)
            {
                index = fds.Count;
                fds.Add(region.FileDescriptor);
            }
            entries.Add(new GuestMemoryTableEntry(slot.GuestPhysAddr, slot.Size, slot.HostAddress - region.HostAddress, index, slot.AddressSpace,
                (slot.Flags & Kvm.Interop.KvmMemFlags.KVM_MEM_READONLY) != 0));
        }
        return new GuestMemoryTable(entries, fds);
    }

    /// <summary>The HELLO payload: {u32 version, u32 page size, u32 entries, u32 fds}, then 32 bytes per entry.</summary>
    public byte[] Encode()
    {
        var payload = new byte[16 + Entries.Count * TrackerWire.RegionBytes];
        var span = payload.AsSpan();
        BitConverter.TryWriteBytes(span, TrackerWire.Version);
        BitConverter.TryWriteBytes(span[4..], (uint)GuestMemoryRegion.PageSize);
        BitConverter.TryWriteBytes(span[8..], (uint)Entries.Count);
        BitConverter.TryWriteBytes(span[12..], (uint)Fds.Count);
        for (int i = 0; i < Entries.Count; i++)
        {
            var e = Entries[i];
            var at = span[(16 + i * TrackerWire.RegionBytes)..];
            BitConverter.TryWriteBytes(at, e.Gpa);
            BitConverter.TryWriteBytes(at[8..], e.Size);
            BitConverter.TryWriteBytes(at[16..], e.FdOffset);
            BitConverter.TryWriteBytes(at[24..], (uint)e.FdIndex);
            BitConverter.TryWriteBytes(at[28..], (ushort)e.AddressSpace);
            BitConverter.TryWriteBytes(at[30..], (ushort)(e.ReadOnly ? 1 : 0));
        }
        return payload;
    }

    public static (uint Version, uint PageSize, GuestMemoryTableEntry[] Entries, int FdCount) Decode(ReadOnlySpan<byte> payload)
    {
        if (payload.Length < 16) throw new InvalidDataException($"HELLO of {payload.Length} bytes is shorter than its 16-byte header");
        uint version = BitConverter.ToUInt32(payload), pageSize = BitConverter.ToUInt32(payload[4..]);
        int count = (int)BitConverter.ToUInt32(payload[8..]), fdCount = (int)BitConverter.ToUInt32(payload[12..]);
        if (payload.Length != 16 + (long)count * TrackerWire.RegionBytes) throw new InvalidDataException($"HELLO announces {count} regions in {payload.Length} bytes");
        var entries = new GuestMemoryTableEntry[count];
        for (int i = 0; i < count; i++)
        {
            var at = payload[(16 + i * TrackerWire.RegionBytes)..];
            entries[i] = new GuestMemoryTableEntry(BitConverter.ToUInt64(at), BitConverter.ToUInt64(at[8..]), BitConverter.ToUInt64(at[16..]),
                (int)BitConverter.ToUInt32(at[24..]), BitConverter.ToUInt16(at[28..]), (BitConverter.ToUInt16(at[30..]) & 1) != 0);
        }
        return (version, pageSize, entries, fdCount);
    }
}
