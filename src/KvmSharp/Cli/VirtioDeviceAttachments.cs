using KvmSharp.Devices.Virtio.Block;
using KvmSharp.Devices.Virtio.Net;
using KvmSharp.Devices.Virtio.Rng;
using KvmSharp.Devices.Virtio.Vsock;
using KvmSharp.Vmm.Devices;
using KvmSharp.Vmm.Machine;
using Microsoft.Extensions.Logging;

namespace KvmSharp.Cli;

/// <summary>The attach steps `run` adds for a Linux guest: the PCI root, one virtio-blk per --drive (vda, vdb, ... in order), one virtio-net per --net, the virtio-console (--console virtio, --port), one virtio-fs per --share, virtio-vsock (--vsock) and virtio-rng (unless --no-rng).</summary>
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
        for (int i = 0; i < options.Nets.Count; i++)
        {
            var spec = options.Nets[i];
            steps.Add(PciAttachments.Virtio($"virtio-net{i} ({spec.DisplayName})", machine => new VirtioNet(TapDevice.Open(spec.Tap), spec.EffectiveMac,
                machine.EventLoop, machine.LoggerFactory.CreateLogger<VirtioNet>(), spec.DisplayName)));
        }
        // Named ports need the multiport console too; its hvc0 takes the typed input only with --console virtio.
        if (options.VirtioConsole || options.Ports.Count > 0) steps.Add(PciAttachments.VirtioConsole(options.Ports, takesConsoleInput: options.VirtioConsole));
        foreach (var share in options.Shares) steps.Add(ShareAttachments.VirtioFs(share));
        if (options.Vsock is { } vsock) steps.Add(PciAttachments.Virtio("virtio-vsock", machine => new VirtioVsock(vsock, machine.EventLoop, machine.LoggerFactory.CreateLogger<VirtioVsock>())));
        if (options.Rng) steps.Add(PciAttachments.Virtio("virtio-rng", machine => new VirtioRng(machine.LoggerFactory.CreateLogger<VirtioRng>())));
        return steps;
    }
}
