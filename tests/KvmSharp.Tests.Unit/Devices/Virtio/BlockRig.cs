using System.Buffers.Binary;
using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Block;

namespace KvmSharp.Tests.Unit.Devices.Virtio;

/// <summary>
/// A virtio-blk device over a temp image, activated on fake guest RAM, with a driver that submits
/// requests the way Linux lays them out (header, data, status byte) and waits for the used ring.
/// </summary>
internal sealed class BlockRig : IDisposable
{
    public const ulong HeaderArea = 0x40000;
    public const ulong DataArea = 0x100000;
    public const ulong StatusArea = 0x80000;
    public static readonly TimeSpan CompletionTimeout = TimeSpan.FromSeconds(20);

    private int _submitted;

    public BlockRig(TempImage image, DriveSpec? spec = null, ushort queueSize = 64, ulong? features = null, int workers = 4, ulong ramSize = 4 << 20)
    {
        Image = BlockImage.Open(spec ?? new DriveSpec(image.Path));
        Device = new VirtioBlock(Image, Logger, workerCount: workers, queueSize: queueSize);
        Memory = new FakeGuestMemory(ramSize);
        Driver = DriverQueue.AtStart(Memory, queueSize);
        Activate(features ?? Device.AvailableFeatures);
    }

    public BlockImage Image { get; }

    public RecordingLogger<VirtioBlock> Logger { get; } = new();

    public VirtioBlock Device { get; }

    public FakeGuestMemory Memory { get; }

    public DriverQueue Driver { get; private set; }

    public RecordingVirtioInterrupt Interrupt { get; private set; } = new();

    public RecordingTransportStatus Transport { get; private set; } = new();

    public void Activate(ulong features)
    {
        Interrupt = new RecordingVirtioInterrupt();
        Transport = new RecordingTransportStatus();
        Device.Activate(new VirtioActivation(features | VirtioFeatureBits.VIRTIO_F_VERSION_1, [Driver.Config], Memory, Interrupt, Transport));
    }

    /// <summary>Write a header for request <paramref name="slot"/> and return its address.</summary>
    public ulong Header(int slot, VirtioBlockRequestType type, ulong sector)
    {
        ulong at = HeaderArea + (ulong)slot * 16;
        var header = Memory.At(at, 16);
        BinaryPrimitives.WriteUInt32LittleEndian(header, (uint)type);
        BinaryPrimitives.WriteUInt32LittleEndian(header[4..], 0);
        BinaryPrimitives.WriteUInt64LittleEndian(header[8..], sector);
        return at;
    }

    public ulong Status(int slot) => StatusArea + (ulong)slot;

    /// <summary>Submit one request (data buffers given explicitly), kick, wait for completion; returns status and used length.</summary>
    public (VirtioBlockStatus Status, uint UsedLength) Run(VirtioBlockRequestType type, ulong sector, params (ulong Address, uint Length, bool Writable)[] data)
    {
        int slot = _submitted % Driver.Size;
        Memory.At(Status(slot), 1)[0] = 0xFF;
        var buffers = new List<(ulong, uint, bool)> { (Header(slot, type, sector), 16, false) };
        buffers.AddRange(data);
        buffers.Add((Status(slot), 1, true));
        Driver.AddChain([.. buffers]);
        _submitted++;
        Device.QueueNotify(0);
        WaitForUsed((ushort)_submitted);
        var (_, length) = Driver.UsedElement((ushort)(_submitted - 1));
        return ((VirtioBlockStatus)Memory.At(Status(slot), 1)[0], length);
    }

    public void WaitForUsed(ushort usedIdx)
    {
        var deadline = DateTime.UtcNow + CompletionTimeout;
        while (Driver.UsedIdx != usedIdx)
        {
            if (Transport.NeedsReset)
            {
                throw new InvalidOperationException($"device needs reset: {Transport.Reasons.First()}");
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"used idx stayed {Driver.UsedIdx}, expected {usedIdx}");
            }

            Thread.Sleep(1);
        }
    }

    public void Dispose() => Device.Dispose();
}
