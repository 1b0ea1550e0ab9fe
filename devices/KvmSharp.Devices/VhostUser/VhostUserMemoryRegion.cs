using System.Runtime.InteropServices;
using KvmSharp.Devices.Memory;

namespace KvmSharp.Devices.VhostUser;

/// <summary>
/// One piece of guest RAM as a back end maps it: where it is for the guest, where it is in the VMM
/// (ring addresses are sent as VMM addresses), and the file (a memfd) and offset that back it. The
/// handle stays the VMM's; it is only lent to the message that sends it.
/// </summary>
public sealed record VhostUserMemoryRegion(GuestAddress GuestAddress, ulong Size, ulong HostAddress, SafeHandle File, ulong FileOffset)
{
    /// <summary>The VMM address of <c>[address, address + length)</c> when it lies inside this region.</summary>
    public bool TryTranslate(GuestAddress address, ulong length, out ulong hostAddress)
    {
        ulong offset = address.Value - GuestAddress.Value;
        if (address.Value >= GuestAddress.Value && offset < Size && length <= Size - offset)
        {
            hostAddress = HostAddress + offset;
            return true;
        }

        hostAddress = 0;
        return false;
    }
}
