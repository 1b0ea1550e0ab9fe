using System.Buffers.Binary;
using System.Collections.Frozen;
using System.Text;
using KvmSharp.Devices.Bus;

namespace KvmSharp.Devices.FwCfg;

/// <summary>
/// QEMU's firmware configuration device, traditional interface only (no DMA), at I/O ports 0x510-0x511:
/// a 16-bit write to 0x510 selects an item and rewinds it; each byte read (from 0x511, or 0x510 as QEMU
/// allows) returns the item's next byte, and zero past its end or for an unknown key. Byte writes to the
/// data port are ignored (QEMU deprecated them). The items are fixed when the device is made.
/// </summary>
public sealed class FwCfgDevice : IBusDevice
{
    public const ushort SelectorPort = 0x510;
    public const ushort DataPort = 0x511;
    public const ulong PortCount = 2;

    private readonly FrozenDictionary<ushort, byte[]> _items;
    private readonly Lock _lock = new();
    private byte[] _selected = [];
    private FwCfgState _state;

    /// <summary>A device serving <paramref name="items"/> (key → contents) and <paramref name="files"/> (from FW_CFG_FILE_FIRST, listed in FW_CFG_FILE_DIR).</summary>
    public FwCfgDevice(IReadOnlyDictionary<ushort, byte[]> items, IReadOnlyList<FwCfgFile>? files = null)
    {
        var all = new Dictionary<ushort, byte[]>(items);
        files ??= [];
        var directory = new byte[4 + files.Count * FwCfgKeys.FileEntrySize];
        BinaryPrimitives.WriteUInt32BigEndian(directory, (uint)files.Count);
        for (int i = 0; i < files.Count; i++)
        {
            var file = files[i];
            byte[] name = Encoding.ASCII.GetBytes(file.Name);
            if (name.Length == 0 || name.Length >= FwCfgKeys.FileNameSize)
                throw new ArgumentException($"fw_cfg file name '{file.Name}' must have 1 to {FwCfgKeys.FileNameSize - 1} characters", nameof(files));
            ushort selector = (ushort)(FwCfgKeys.FW_CFG_FILE_FIRST + i);
            var entry = directory.AsSpan(4 + i * FwCfgKeys.FileEntrySize, FwCfgKeys.FileEntrySize);
            BinaryPrimitives.WriteUInt32BigEndian(entry, (uint)file.Contents.Length);
            BinaryPrimitives.WriteUInt16BigEndian(entry[4..], selector);
            name.CopyTo(entry[8..]);
            all[selector] = file.Contents;
        }
        all[FwCfgKeys.FW_CFG_FILE_DIR] = directory;
        _items = all.ToFrozenDictionary();
        Select(FwCfgKeys.FW_CFG_SIGNATURE);
    }

    /// <summary>The items QEMU's x86 machines give firmware: "QEMU", the interface id, RAM size, vCPU count (present and maximum), and a file directory (empty unless <paramref name="files"/>).</summary>
    public static FwCfgDevice ForMachine(int cpus, ulong memoryBytes, IReadOnlyList<FwCfgFile>? files = null)
    {
        var items = new Dictionary<ushort, byte[]>
        {
            [FwCfgKeys.FW_CFG_SIGNATURE] = "QEMU"u8.ToArray(),
            [FwCfgKeys.FW_CFG_ID] = LittleEndian32(FwCfgKeys.FW_CFG_VERSION),
            [FwCfgKeys.FW_CFG_RAM_SIZE] = BitConverter.GetBytes(memoryBytes),
            [FwCfgKeys.FW_CFG_NB_CPUS] = BitConverter.GetBytes((ushort)cpus),
            [FwCfgKeys.FW_CFG_MAX_CPUS] = BitConverter.GetBytes((ushort)cpus),
        };
        return new FwCfgDevice(items, files);
    }

    /// <summary>The selected item and read position (for snapshots).</summary>
    public FwCfgState State
    {
        get
        {
            lock (_lock) return _state;
        }
    }

    /// <summary>Continue from a saved <see cref="State"/>.</summary>
    public void Restore(FwCfgState state)
    {
        lock (_lock)
        {
            _selected = _items.GetValueOrDefault(state.Selector) ?? [];
            _state = state;
        }
    }

    public void Read(ulong offset, Span<byte> data)
    {
        lock (_lock)
        {
            // One vCPU's selector and position are every vCPU's, as on the real device: reads of a byte
            // stream are serialized so none is skipped or returned twice.
            uint at = _state.Offset;
            for (int i = 0; i < data.Length; i++, at++)
                data[i] = at < (uint)_selected.Length ? _selected[at] : (byte)0;
            _state = _state with { Offset = (uint)Math.Min((ulong)at, (ulong)_selected.Length) };
        }
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        // The selector is written 16 bits wide at 0x510; byte writes are data writes, which are ignored.
        if (offset == 0 && data.Length == 2) Select(BinaryPrimitives.ReadUInt16LittleEndian(data));
    }

    private void Select(ushort key)
    {
        lock (_lock)
        {
            _selected = _items.GetValueOrDefault(key) ?? [];
            _state = new FwCfgState(key, 0);
        }
    }

    private static byte[] LittleEndian32(uint value)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, value);
        return bytes;
    }
}
