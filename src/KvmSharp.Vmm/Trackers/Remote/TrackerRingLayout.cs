namespace KvmSharp.Vmm.Trackers.Remote;

/// <summary>
/// The event ring: a memfd of <see cref="HeaderBytes"/> + data bytes (a power of two), mapped by the VMM
/// and the tracker. Producer fields and consumer fields sit on cache lines of their own. Positions are
/// byte counts that only grow; a record lives at position % data bytes, never wraps (a pad record fills
/// the end), is 8-byte aligned and starts with {u32 kind, u32 size}.
/// </summary>
public static class TrackerRingLayout
{
    public const ulong Magic = 0x31474E4952534B56; // "VKSRING1" little-endian
    public const int HeaderBytes = 4096;

    // Read-only after creation (VMM).
    public const int MagicOffset = 0;
    public const int VersionOffset = 8;
    public const int HeaderBytesOffset = 12;
    public const int DataBytesOffset = 16;
    public const int ModeOffset = 24;
    public const int DeadlineOffset = 28;

    // Written by the VMM.
    public const int HeadOffset = 64;          // u64: bytes published
    public const int LostOffset = 72;          // u64: events lost to overflow, in total
    public const int GapPendingOffset = 80;    // u32: 1 while lost events wait for a gap record
    public const int ProducerWaitingOffset = 84; // u32: vCPUs blocked on the ack eventfd
    public const int PublishedSeqOffset = 88;  // u64: seq of the last record published

    // Written by the tracker.
    public const int TailOffset = 128;         // u64: bytes consumed
    public const int AckedSeqOffset = 136;     // u64: seq of the last record handled
    public const int ConsumerSleepingOffset = 144; // u32: 1 while the tracker blocks on the doorbell

    // Records.
    public const int RecordHeaderBytes = 48;
    public const uint KindPad = 0, KindWrite = 1, KindRemoveRegion = 2, KindGap = 3;
    public const ushort SourceVcpu = 0, SourceDevice = 1;

    // Record fields, from the record's start.
    public const int RecordKind = 0, RecordSize = 4, RecordSeq = 8, RecordVcpu = 16, RecordAddressSpace = 20,
        RecordSource = 22, RecordLength = 24, RecordGpa = 32, RecordAux = 40;

    public static int RecordSizeFor(int length) => (RecordHeaderBytes + length + 7) & ~7;
}
