using CsCheck;
using KvmSharp.Devices.Pci;
using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Transport;
using KvmSharp.Tests.Unit.Devices.Pci;
using Xunit;
using static KvmSharp.Devices.Virtio.Transport.VirtioPciRegs;

namespace KvmSharp.Tests.Unit.Devices.Virtio.Transport;

/// <summary>
/// A hostile driver: random sequences of configuration-space and BAR accesses (any register, width and value,
/// through ECAM and CF8/CFC), interleaved with device-side interrupts and event-loop runs. Nothing may throw
/// out of a bus device, and after every step the transport's invariants hold.
/// </summary>
public sealed class VirtioPciHostileDriverPropertyTests
{
    private enum Kind
    {
        EcamWrite,
        EcamRead,
        Conf1Write,
        Conf1Read,
        BarWrite,
        BarRead,
        DeviceInterrupt,
        RunLoop,
        RingDoorbell,
        LinuxInit,
        EcamAnywhere,
    }

    private readonly record struct Step(Kind Kind, int Offset, int Width, ulong Value);

    private static readonly int[] ConfigOffsets =
        [PciRegs.PCI_COMMAND, PciRegs.PCI_STATUS, 0x10, 0x14, 0x18, 0x20, 0x24, 0x30, 0x3c, 0x40, 0x42, 0x44, 0x48, 0x4c, 0x50, 0x5c, 0x70, 0x80, 0x90, 0x94, 0x98, 0x9c, 0xa0, 0xa0, 0xa0];

    private static readonly int[] CommonOffsets =
    [
        VIRTIO_PCI_COMMON_DFSELECT, VIRTIO_PCI_COMMON_DF, VIRTIO_PCI_COMMON_GFSELECT, VIRTIO_PCI_COMMON_GF, VIRTIO_PCI_COMMON_MSIX,
        VIRTIO_PCI_COMMON_NUMQ, VIRTIO_PCI_COMMON_STATUS, VIRTIO_PCI_COMMON_CFGGENERATION, VIRTIO_PCI_COMMON_Q_SELECT,
        VIRTIO_PCI_COMMON_Q_SIZE, VIRTIO_PCI_COMMON_Q_MSIX, VIRTIO_PCI_COMMON_Q_ENABLE, VIRTIO_PCI_COMMON_Q_NOFF,
        VIRTIO_PCI_COMMON_Q_DESCLO, VIRTIO_PCI_COMMON_Q_DESCHI, VIRTIO_PCI_COMMON_Q_AVAILLO, VIRTIO_PCI_COMMON_Q_USEDHI, 0x37, 0x38, 0xffc,
    ];

    private static readonly ulong[] Values =
    [
        0, 1, 2, 3, 4, 0xf, 0x10, 0x40, 0x80, 0xff, 0x100, 0xffff, 0xffff_ffff, ulong.MaxValue,
        (ulong)PciRegs.PCI_COMMAND_MEMORY, (ulong)(PciRegs.PCI_COMMAND_MEMORY | PciRegs.PCI_COMMAND_MASTER),
        PciRegs.PCI_MSIX_FLAGS_ENABLE, PciRegs.PCI_MSIX_FLAGS_ENABLE | PciRegs.PCI_MSIX_FLAGS_MASKALL,
        (ulong)(VirtioDeviceStatus.ACKNOWLEDGE | VirtioDeviceStatus.DRIVER | VirtioDeviceStatus.FEATURES_OK),
        (ulong)(VirtioDeviceStatus.ACKNOWLEDGE | VirtioDeviceStatus.DRIVER | VirtioDeviceStatus.FEATURES_OK | VirtioDeviceStatus.DRIVER_OK),
        FakeVirtioDevice.DefaultFeatures, FakeVirtioDevice.DefaultFeatures >> 32, 0xfee0_0000, 0xb000_0000, 0xc000_0000, 0x1_0000_0000,
    ];

    private static readonly Gen<int> Width = Gen.OneOf(Gen.Const(1), Gen.Const(2), Gen.Const(4), Gen.Const(8), Gen.Int[3, 3]);

    private static readonly Gen<ulong> Value = Gen.Frequency((4, Gen.Int[0, Values.Length - 1].Select(i => Values[i])), (1, Gen.ULong));

    private static readonly Gen<int> BarOffset = Gen.Frequency(
        (6, Gen.Int[0, CommonOffsets.Length - 1].Select(i => CommonOffsets[i])),
        (2, Gen.Int[0, 0x7fff]),
        (1, Gen.OneOf(Gen.Const(0x1000), Gen.Const(0x2000), Gen.Const(0x3000), Gen.Const(0x3004), Gen.Const(0x4000), Gen.Const(0x400c), Gen.Const(0x5000))));

    private static readonly Gen<Step> AnyStep = Gen.Frequency(
        (4, Gen.Select(Gen.Frequency((3, Gen.Int[0, ConfigOffsets.Length - 1].Select(i => ConfigOffsets[i])), (1, Gen.Int[0, 0xfff])), Width, Value, (o, w, v) => new Step(Kind.EcamWrite, o, w, v))),
        (1, Gen.Select(Gen.Int[0, 0xff], Width, (o, w) => new Step(Kind.EcamRead, o, w, 0))),
        (1, Gen.Select(Gen.Int[0, (int)PciEcam.BytesPerBus + 0x10], Width, Value, (o, w, v) => new Step(Kind.EcamAnywhere, o, w, v))),
        (2, Gen.Select(Gen.Int[0, 0xff], Gen.Int[0, 7], Width, Value, (o, port, w, v) => new Step(Kind.Conf1Write, o, w, v | ((ulong)port << 56)))),
        (1, Gen.Select(Gen.Int[0, 0xff], Gen.Int[0, 7], Width, (o, port, w) => new Step(Kind.Conf1Read, o, w, (ulong)port))),
        (8, Gen.Select(BarOffset, Width, Value, (o, w, v) => new Step(Kind.BarWrite, o, w, v))),
        (3, Gen.Select(BarOffset, Width, (o, w) => new Step(Kind.BarRead, o, w, 0))),
        (2, Gen.Select(Gen.Int[-1, 3], Gen.Int[0, 2], (q, what) => new Step(Kind.DeviceInterrupt, q, what, 0))),
        (1, Gen.Const(new Step(Kind.RunLoop, 0, 0, 0))),
        (1, Gen.Int[0, 3].Select(q => new Step(Kind.RingDoorbell, q, 0, 0))),
        (1, Gen.OneOf(Gen.Const(64), Gen.Const(100), Gen.Const(0), Gen.Const(3), Gen.Const(1), Gen.Const(0x8000)).Select(size => new Step(Kind.LinuxInit, size, 0, 0))));

    [Fact]
    public void Random_register_traffic_never_throws_and_keeps_the_transport_consistent()
    {
        int sequences = 0, activated = 0, hostileAfterActivation = 0, notified = 0;
        AnyStep.Array[1, 150].Sample(steps =>
        {
            var rig = new VirtioPciRig(withIntx: true);
            ulong initialBar = rig.Function.BarProgrammedAddress(VirtioPciFunction.BarIndex);
            int stepsWhileActive = 0;
            foreach (Step step in steps)
            {
                int notifiesBefore = rig.Device.Notifies.Count;
                Apply(rig, step, initialBar);
                if (step.Kind is not (Kind.RunLoop or Kind.RingDoorbell))
                {
                    Assert.Equal(notifiesBefore, rig.Device.Notifies.Count); // the device is never notified on a vCPU access
                }

                CheckInvariants(rig);
                stepsWhileActive += rig.Function.IsActive && step.Kind != Kind.LinuxInit ? 1 : 0;
            }

            Interlocked.Increment(ref sequences);
            if (rig.Device.Activations.Count > 0) Interlocked.Increment(ref activated);
            if (stepsWhileActive > 0) Interlocked.Increment(ref hostileAfterActivation);
            if (rig.Device.Notifies.Count > 0) Interlocked.Increment(ref notified);
        }, iter: 300);

        // The generator must reach the interesting states, or the invariants above prove little.
        Assert.True(activated * 5 > sequences, $"only {activated} of {sequences} sequences activated the device");
        Assert.True(hostileAfterActivation * 10 > sequences, $"only {hostileAfterActivation} of {sequences} sequences had steps while active");
        Assert.True(notified * 20 > sequences, $"only {notified} of {sequences} sequences notified the device");
    }

    private static void Apply(VirtioPciRig rig, Step step, ulong initialBar)
    {
        Span<byte> data = stackalloc byte[8];
        BitConverter.TryWriteBytes(data, step.Value);
        Span<byte> access = data[..step.Width];
        ulong bar = rig.Function.BarMappedAddress(VirtioPciFunction.BarIndex) ?? initialBar;
        switch (step.Kind)
        {
            case Kind.EcamWrite:
                rig.Pci.Mmio.Write(PciRig.Ecam(rig.Slot, 0, step.Offset), access);
                break;
            case Kind.EcamAnywhere:
                // Any function (the host bridge, empty slots, past the window), written then read back.
                rig.Pci.Mmio.Write(PciRig.EcamBase + (ulong)step.Offset, access);
                rig.Pci.Mmio.Read(PciRig.EcamBase + (ulong)step.Offset, access);
                break;
            case Kind.EcamRead:
                rig.Pci.Mmio.Read(PciRig.Ecam(rig.Slot, 0, step.Offset), access);
                break;
            case Kind.Conf1Write:
                rig.Pci.Pio.Write32(0xcf8, PciConfigAddress.ToConfigMechanism1(new PciAddress(0, (byte)rig.Slot, 0), step.Offset));
                rig.Pci.Pio.Write(0xcf8 + (step.Value >> 56), access);
                break;
            case Kind.Conf1Read:
                rig.Pci.Pio.Write32(0xcf8, PciConfigAddress.ToConfigMechanism1(new PciAddress(0, (byte)rig.Slot, 0), step.Offset));
                rig.Pci.Pio.Read(0xcf8 + step.Value, access);
                break;
            case Kind.BarWrite:
                rig.Pci.Mmio.Write(bar + (ulong)step.Offset, access);
                break;
            case Kind.BarRead:
                rig.Pci.Mmio.Read(bar + (ulong)step.Offset, access);
                break;
            case Kind.DeviceInterrupt when rig.Device.Current is { } activation:
                switch (step.Width)
                {
                    case 0: activation.Interrupt.NotifyQueue(step.Offset); break;
                    case 1: activation.Interrupt.NotifyConfigChange(); break;
                    default: activation.Transport.MarkNeedsReset("property test"); break;
                }

                break;
            case Kind.RunLoop:
                rig.Loop.RunPending();
                break;
            case Kind.RingDoorbell:
                rig.Registrar.Active.ElementAtOrDefault(step.Offset)?.Ring();
                break;
            case Kind.LinuxInit:
                try
                {
                    new LinuxVirtioPciDriver(rig).InitializeToDriverOk(queueSize: (ushort)step.Offset);
                }
                catch (DriverGaveUpException)
                {
                    // The hostile steps before left the device where an honest driver cannot bring it up (e.g. MSI-X
                    // table entries refused); that is a refusal, not a failure.
                }

                break;
        }
    }

    private static void CheckInvariants(VirtioPciRig rig)
    {
        VirtioPciFunction function = rig.Function;
        VirtioDeviceStatus status = function.DeviceStatus;
        if ((status & VirtioDeviceStatus.DRIVER_OK) != 0)
        {
            Assert.True((status & VirtioDeviceStatus.FEATURES_OK) != 0, $"DRIVER_OK without FEATURES_OK: {status}");
            Assert.True(function.IsActive);
        }

        if ((status & VirtioDeviceStatus.FEATURES_OK) != 0)
        {
            Assert.Equal(0ul, function.DriverFeatures & ~function.OfferedFeatures);
            Assert.NotEqual(0ul, function.DriverFeatures & VirtioFeatureBits.VIRTIO_F_VERSION_1);
        }

        Assert.Equal((status & VirtioDeviceStatus.DRIVER_OK) != 0, function.IsActive);
        Assert.Equal(0, rig.Device.ActivatedWhileActive);
        Assert.Equal(0, rig.Device.NotifiesWhileInactive);
        foreach (VirtioActivation activation in rig.Device.Activations)
        {
            foreach (VirtqueueConfig queue in activation.Queues)
            {
                Assert.True(ushort.IsPow2(queue.Size) && queue.Size <= rig.Device.QueueMaxSizes[queue.Index], $"queue {queue.Index} size {queue.Size}");
            }
        }

        // The BAR is mapped exactly where it is programmed, or not at all; the bus never grows.
        ulong programmed = function.BarProgrammedAddress(VirtioPciFunction.BarIndex);
        ulong? mapped = function.BarMappedAddress(VirtioPciFunction.BarIndex);
        bool decoding = function.MemoryDecodingEnabled;
        if (mapped is { } at)
        {
            Assert.True(decoding);
            Assert.Equal(programmed, at);
        }
        else if (decoding)
        {
            bool wraps = programmed + function.Layout.Size < programmed;
            bool overEcam = programmed < PciRig.EcamBase + rig.Pci.Root.Ecam.Size && PciRig.EcamBase < programmed + function.Layout.Size;
            Assert.True(wraps || overEcam, $"decoding on but BAR at 0x{programmed:x} not mapped");
        }

        Assert.True(rig.Pci.Mmio.Ranges.Count <= 2);
        Assert.True(rig.Pci.Mmio.RangeIdCount <= 2);

        // Doorbells follow the mapping.
        var doorbells = rig.Registrar.Active.Select(doorbell => doorbell.Address).ToList();
        if (mapped is { } barBase)
        {
            Assert.Equal(Enumerable.Range(0, rig.Device.QueueMaxSizes.Count).Select(q => barBase + function.Layout.NotifyOffset + (ulong)q * VirtioPciBarLayout.NotifyOffMultiplier), doorbells);
        }
        else
        {
            Assert.Empty(doorbells);
        }

        // A vector is held pending only while something masks it.
        MsixTable msix = function.MsixTable;
        for (int vector = 0; vector < msix.VectorCount; vector++)
        {
            Assert.True(!msix.IsPending(vector) || msix.IsMasked(vector) || msix.FunctionMasked || !msix.Enabled, $"vector {vector} pending while deliverable");
        }
    }
}
