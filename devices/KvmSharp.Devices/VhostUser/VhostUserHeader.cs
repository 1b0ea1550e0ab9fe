using System.Buffers.Binary;

namespace KvmSharp.Devices.VhostUser;

/// <summary>
/// The 12-byte header every vhost-user message starts with (request, flags, payload size; native
/// byte order, which is little-endian on x86). No kernel header declares it, so it is encoded by
/// hand here rather than mirrored as an interop struct.
/// </summary>
public readonly record struct VhostUserHeader(uint Request, uint Flags, uint Size)
{
    public const int Length = 12;

    /// <summary>Bits 0-1 of the flags: the protocol version, always 1.</summary>
    public const uint VersionMask = 0x3;
    public const uint Version = 0x1;

    /// <summary>Set by the back end on a reply.</summary>
    public const uint ReplyFlag = 1u << 2;

    /// <summary>Set by the front end to ask for an acknowledgement (REPLY_ACK).</summary>
    public const uint NeedReplyFlag = 1u << 3;

    /// <summary>The largest payload KvmSharp accepts from a back end (the biggest it expects is a u64).</summary>
    public const int MaxPayload = 4096;

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(destination, Request);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[8..], Size);
    }

    public static VhostUserHeader Read(ReadOnlySpan<byte> source) => new(
        BinaryPrimitives.ReadUInt32LittleEndian(source),
        BinaryPrimitives.ReadUInt32LittleEndian(source[4..]),
        BinaryPrimitives.ReadUInt32LittleEndian(source[8..]));
}
