using KvmSharp.Devices.Virtio.Block;
using KvmSharp.Devices.Virtio.Rng;
using KvmSharp.Vmm.Devices;
using KvmSharp.Vmm.Machine;
using Microsoft.Extensions.Logging;

namespace KvmSharp.Cli;

/// <summary>The attach steps `run` adds for a Linux guest: the PCI root, one virtio-blk per --drive (vda, vdb, ... in order), the virtio-console (--console virtio, --port) and virtio-rng (unless --no-rng).</summary>
internal static class VirtioDeviceAttachments
{
    public static IReadOnlyList<DeviceAttachment> For(ValidatedRunOptions options)
    {
        if (options.Kernel is null) return [];
        var steps = new List<DeviceAttachment> { PciAttachments.Root };
        // Disks first: Linux names virtio disks in probe order, which is slot order.
        for (int i = 0; i < options.Drives.Count; i++)
        {
            var spec = options.Drives[i];
            steps.Add(PciAttachments.Virtio($"virtio-blk{i} ({spec.DisplayName})",
                machine => new VirtioBlock(BlockImage.Open(spec), machine.LoggerFactory.CreateLogger<VirtioBlock>())));
        }
        // Named ports need the multiport console too; its hvc0 takes the typed input only with --console virtio.
        if (options.VirtioConsole || options.Ports.Count > 0) steps.Add(PciAttachments.VirtioConsole(options.Ports, takesConsoleInput: options.VirtioConsole));
        foreach (var share in options.Shares) steps.Add(ShareAttachments.VirtioFs(share));
        if (options.Rng) steps.Add(PciAttachments.Virtio("virtio-rng", machine => new VirtioRng(machine.LoggerFactory.CreateLogger<VirtioRng>())));
        return steps;
    }
}
