using KvmSharp.Devices.Interrupts;

namespace KvmSharp.Devices.Pci;

/// <summary>
/// An MSI-X table and its pending-bit array (PCI 3.0, 6.8.2): one entry per vector (message address,
/// data, vector control), each backed by an <see cref="IMsiVector"/> from the VMM. A vector that fires
/// while masked (by its own mask bit or the function mask) sets its pending bit instead, and is delivered
/// when unmasked. The message is handed to the VMM (<see cref="IMsiVector.Update"/>) when the vector
/// becomes deliverable after the guest changed it, so the three writes of a reprogramming cost one route
/// update. Table writes come from vCPU threads and triggers from any thread: state changes are taken under
/// a lock; a trigger of a deliverable, unchanged vector takes none and allocates nothing.
/// </summary>
public sealed class MsixTable : IDisposable
{
    private const int DwordsPerEntry = PciRegs.PCI_MSIX_ENTRY_SIZE / 4;
    private const int ControlDword = PciRegs.PCI_MSIX_ENTRY_VECTOR_CTRL / 4;

    /// <summary>The most vectors an MSI-X capability can describe (the table-size field is 11 bits, N-1).</summary>
    public const int MaxVectors = 2048;

    private readonly IMsiVector[] _vectors;
    private readonly uint[] _entries;
    private readonly ulong[] _pending;
    private readonly bool[] _messageChanged;
    private readonly Lock _lock = new();
    private volatile bool _enabled;
    private volatile bool _functionMasked;
    private bool _disposed;

    /// <param name="controller">Source of the vectors; one is allocated per table entry now.</param>
    /// <param name="vectorCount">Table entries, 1..2048.</param>
    public MsixTable(IMsiController controller, int vectorCount)
    {
        ArgumentNullException.ThrowIfNull(controller);
        ArgumentOutOfRangeException.ThrowIfLessThan(vectorCount, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(vectorCount, MaxVectors);
        _vectors = new IMsiVector[vectorCount];
        _entries = new uint[vectorCount * DwordsPerEntry];
        _pending = new ulong[(vectorCount + 63) / 64];
        _messageChanged = new bool[vectorCount];
        for (int i = 0; i < vectorCount; i++)
        {
            _vectors[i] = controller.AllocateVector();
            // Every vector comes out of reset masked (PCI 3.0, 6.8.2.9).
            _entries[i * DwordsPerEntry + ControlDword] = PciRegs.PCI_MSIX_ENTRY_CTRL_MASKBIT;
        }
    }

    public int VectorCount => _vectors.Length;

    /// <summary>Bytes the table occupies in its BAR.</summary>
    public int TableSize => _vectors.Length * PciRegs.PCI_MSIX_ENTRY_SIZE;

    /// <summary>Bytes the pending-bit array occupies in its BAR (whole qwords).</summary>
    public int PbaSize => _pending.Length * 8;

    /// <summary>The capability's MSI-X Enable bit, as the guest last wrote it.</summary>
    public bool Enabled => _enabled;

    /// <summary>The capability's Function Mask bit, as the guest last wrote it.</summary>
    public bool FunctionMasked => _functionMasked;

    public bool IsMasked(int vector) => (Volatile.Read(ref _entries[vector * DwordsPerEntry + ControlDword]) & PciRegs.PCI_MSIX_ENTRY_CTRL_MASKBIT) != 0;

    public bool IsPending(int vector) => (Volatile.Read(ref _pending[vector >> 6]) & (1UL << (vector & 63))) != 0;

    /// <summary>The message address the guest programmed into <paramref name="vector"/>.</summary>
    public ulong MessageAddress(int vector)
    {
        int entry = vector * DwordsPerEntry;
        return Volatile.Read(ref _entries[entry]) | ((ulong)Volatile.Read(ref _entries[entry + 1]) << 32);
    }

    /// <summary>The message data the guest programmed into <paramref name="vector"/>.</summary>
    public uint MessageData(int vector) => Volatile.Read(ref _entries[vector * DwordsPerEntry + 2]);

    /// <summary>
    /// Fire <paramref name="vector"/>: deliver it, or hold it pending while it is masked. False when MSI-X is
    /// disabled, so the caller can fall back to INTx; an out-of-range vector is dropped (true). Any thread.
    /// </summary>
    public bool Trigger(int vector)
    {
        if (!_enabled)
        {
            return false;
        }

        if ((uint)vector >= (uint)_vectors.Length)
        {
            return true;
        }

        // Fast path: deliverable and unchanged since the last route update. A guest masking at this very
        // moment may still see this one message, which a real device's in-flight write could do as well.
        if (!_functionMasked && !IsMasked(vector) && !Volatile.Read(ref _messageChanged[vector]))
        {
            _vectors[vector].Trigger();
            return true;
        }

        lock (_lock)
        {
            if (!_enabled)
            {
                return false;
            }

            if (_functionMasked || IsMasked(vector))
            {
                _pending[vector >> 6] |= 1UL << (vector & 63);
            }
            else
            {
                DeliverLocked(vector);
            }
        }

        return true;
    }

    /// <summary>The guest wrote the capability's Message Control: enable and function-mask bits.</summary>
    public void SetControl(bool enabled, bool functionMasked)
    {
        lock (_lock)
        {
            _enabled = enabled;
            _functionMasked = functionMasked;
            if (enabled && !functionMasked)
            {
                for (int vector = 0; vector < _vectors.Length; vector++)
                {
                    if (!IsMasked(vector))
                    {
                        BecameDeliverableLocked(vector);
                    }
                }
            }
        }
    }

    /// <summary>A guest read of the table at <paramref name="offset"/> (any size; bytes past the table read as zero).</summary>
    public void ReadTable(ulong offset, Span<byte> data)
    {
        lock (_lock)
        {
            for (int i = 0; i < data.Length; i++)
            {
                ulong at = offset + (ulong)i;
                data[i] = at < (ulong)TableSize ? (byte)(_entries[(int)(at >> 2)] >> (int)((at & 3) * 8)) : (byte)0;
            }
        }
    }

    /// <summary>A guest write to the table at <paramref name="offset"/>; reserved bits stay zero, bytes past the table are dropped.</summary>
    public void WriteTable(ulong offset, ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            int firstTouched = int.MaxValue;
            int lastTouched = -1;
            for (int i = 0; i < data.Length; i++)
            {
                ulong at = offset + (ulong)i;
                if (at >= (ulong)TableSize)
                {
                    break;
                }

                int dwordIndex = (int)(at >> 2);
                int shift = (int)((at & 3) * 8);
                uint old = _entries[dwordIndex];
                uint value = (old & ~(0xffu << shift)) | ((uint)data[i] << shift);
                int field = dwordIndex % DwordsPerEntry;
                value &= field switch
                {
                    0 => ~3u, // the message address is dword aligned: bits 1:0 are read-only zero
                    ControlDword => PciRegs.PCI_MSIX_ENTRY_CTRL_MASKBIT,
                    _ => uint.MaxValue,
                };
                int vector = dwordIndex / DwordsPerEntry;
                if (field != ControlDword && value != old)
                {
                    _messageChanged[vector] = true;
                }

                Volatile.Write(ref _entries[dwordIndex], value);
                firstTouched = Math.Min(firstTouched, vector);
                lastTouched = vector;
            }

            if (_enabled && !_functionMasked)
            {
                for (int vector = firstTouched; vector <= lastTouched; vector++)
                {
                    if (!IsMasked(vector))
                    {
                        BecameDeliverableLocked(vector);
                    }
                }
            }
        }
    }

    /// <summary>A guest read of the pending-bit array (read-only; writes are dropped by the caller).</summary>
    public void ReadPba(ulong offset, Span<byte> data)
    {
        lock (_lock)
        {
            for (int i = 0; i < data.Length; i++)
            {
                ulong at = offset + (ulong)i;
                data[i] = at < (ulong)PbaSize ? (byte)(_pending[(int)(at >> 3)] >> (int)((at & 7) * 8)) : (byte)0;
            }
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _enabled = false;
        }

        foreach (IMsiVector vector in _vectors)
        {
            vector.Dispose();
        }
    }

    // The vector is unmasked and the function enabled and unmasked: hand over a changed message, then
    // deliver what fired while it was masked.
    private void BecameDeliverableLocked(int vector)
    {
        if (_messageChanged[vector])
        {
            UpdateRouteLocked(vector);
        }

        ref ulong pendingWord = ref _pending[vector >> 6];
        ulong bit = 1UL << (vector & 63);
        if ((pendingWord & bit) != 0)
        {
            Volatile.Write(ref pendingWord, pendingWord & ~bit);
            _vectors[vector].Trigger();
        }
    }

    private void DeliverLocked(int vector)
    {
        if (_messageChanged[vector])
        {
            UpdateRouteLocked(vector);
        }

        _vectors[vector].Trigger();
    }

    private void UpdateRouteLocked(int vector)
    {
        Volatile.Write(ref _messageChanged[vector], false);
        _vectors[vector].Update(MessageAddress(vector), MessageData(vector));
    }

    /// <summary>The little-endian dword of the capability's Table Offset/BIR or PBA Offset/BIR register.</summary>
    internal static uint OffsetAndBir(uint offset, int barIndex) => (offset & ~(uint)PciRegs.PCI_MSIX_TABLE_BIR) | (uint)barIndex;
}
