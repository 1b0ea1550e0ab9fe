using KvmSharp.Devices.Virtio.Fs;
using KvmSharp.Devices.VhostUser;
using KvmSharp.Vmm.Machine;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace KvmSharp.Vmm.Devices;

/// <summary>
/// Host directory shares: one virtio-fs function per <see cref="ShareOptions"/>, served by a virtiofsd
/// KvmSharp starts, supervises and stops with the VM. Guest RAM must be memfd-backed
/// (<see cref="VmConfig.MemfdBacking"/>), since virtiofsd maps it. virtiofsd dying while the VM runs ends
/// the VM with an error naming the share (the guest's file system would otherwise hang).
/// </summary>
public static class ShareAttachments
{
    /// <summary>The attach step for one share.</summary>
    public static DeviceAttachment VirtioFs(ShareOptions share) => PciAttachments.Virtio($"virtio-fs ({share.Tag})", machine =>
    {
        ArgumentNullException.ThrowIfNull(share);
        if (!machine.Config.MemfdBacking)
            throw new InvalidOperationException($"share '{share.Tag}' needs memfd-backed guest RAM (VmConfig.MemfdBacking, --memfd) so virtiofsd can map it");
        var vm = machine.Machine;
        var backend = VirtiofsdBackend.Start(share, machine.LoggerFactory.CreateLogger<VirtiofsdBackend>(),
            onUnexpectedExit: message => machine.End(VmOutcome.Error(message)));
        VhostUserFrontend? frontend = null;
        try
        {
            frontend = new VhostUserFrontend(backend.TakeConnection());
            try
            {
                frontend.Handshake();
            }
            catch (VhostUserException e)
            {
                // A sandbox virtiofsd could not set up shows as a hang-up here; its own words say why.
                throw new VirtiofsdException($"share '{share.Tag}': vhost-user handshake failed ({e.Message}); {backend.DescribeExit()}", e);
            }
            return new VirtioFs(share.Tag, frontend, () => MemoryTable(vm), machine.EventLoop, machine.LoggerFactory.CreateLogger<VirtioFs>(), backend);
        }
        catch
        {
            frontend?.Dispose();
            backend.Dispose();
            throw;
        }
    });

    /// <summary>Guest RAM (address space 0) as vhost-user memory regions: each memslot with the memfd behind it and its offset there.</summary>
    public static IReadOnlyList<VhostUserMemoryRegion> MemoryTable(VirtualMachine vm)
    {
        var table = new List<VhostUserMemoryRegion>();
        foreach (var slot in vm.Memslots.Current.Slots(0))
        {
            var region = vm.RamRegions.FirstOrDefault(r => slot.HostAddress >= r.HostAddress && slot.HostAddress - r.HostAddress < r.Size)
                ?? throw new InvalidOperationException($"memslot {slot} is not guest RAM KvmSharp allocated");
            if (region.FileDescriptor < 0)
                throw new InvalidOperationException($"guest RAM region '{region.Name}' is anonymous memory; a vhost-user back end needs memfd-backed RAM (--memfd)");
            // The region keeps its descriptor; the handle only lends it to the message.
            table.Add(new VhostUserMemoryRegion(new(slot.GuestPhysAddr), slot.Size, slot.HostAddress,
                new SafeFileHandle(region.FileDescriptor, ownsHandle: false), slot.HostAddress - region.HostAddress));
        }
        return table;
    }
}
