using System.Buffers.Binary;
using System.Net;

namespace KvmSharp.Tests.Integration.Net;

/// <summary>Ethernet + IPv4 + UDP frames built and read by hand (RFC 791, 768), to cross a real tap.</summary>
internal static class UdpFrames
{
    public const int EthernetBytes = 14;
    public const int IpBytes = 20;
    public const int UdpOffset = EthernetBytes + IpBytes;
    public const int PayloadOffset = UdpOffset + 8;

    /// <summary>A frame; with <paramref name="partialChecksum"/>, the UDP checksum field holds only the pseudo-header sum (for VIRTIO_NET_HDR_F_NEEDS_CSUM).</summary>
    public static byte[] Build(byte[] destinationMac, byte[] sourceMac, IPAddress source, IPAddress destination, ushort sourcePort, ushort destinationPort, ReadOnlySpan<byte> payload, bool partialChecksum)
    {
        var frame = new byte[PayloadOffset + payload.Length];
        destinationMac.CopyTo(frame, 0);
        sourceMac.CopyTo(frame, 6);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), 0x0800);
        var ip = frame.AsSpan(EthernetBytes, IpBytes);
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(IpBytes + 8 + payload.Length));
        ip[8] = 64;
        ip[9] = 17;
        source.GetAddressBytes().CopyTo(ip[12..]);
        destination.GetAddressBytes().CopyTo(ip[16..]);
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], (ushort)~Sum(ip, 0));
        var udp = frame.AsSpan(UdpOffset);
        BinaryPrimitives.WriteUInt16BigEndian(udp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(udp[2..], destinationPort);
        BinaryPrimitives.WriteUInt16BigEndian(udp[4..], (ushort)(8 + payload.Length));
        payload.CopyTo(frame.AsSpan(PayloadOffset));
        uint pseudo = PseudoHeaderSum(frame);
        BinaryPrimitives.WriteUInt16BigEndian(udp[6..], partialChecksum ? Fold(pseudo) : (ushort)~Fold(Sum(udp, pseudo)));
        return frame;
    }

    /// <summary>Whether the frame's UDP checksum is complete and correct.</summary>
    public static bool UdpChecksumValid(ReadOnlySpan<byte> frame)
        => Fold(Sum(frame[UdpOffset..(EthernetBytes + BinaryPrimitives.ReadUInt16BigEndian(frame[(EthernetBytes + 2)..]))], PseudoHeaderSum(frame))) == 0xFFFF;

    public static bool IsUdpTo(ReadOnlySpan<byte> frame, ushort port)
        => frame.Length >= PayloadOffset && BinaryPrimitives.ReadUInt16BigEndian(frame[12..]) == 0x0800 && frame[EthernetBytes + 9] == 17
           && BinaryPrimitives.ReadUInt16BigEndian(frame[(UdpOffset + 2)..]) == port;

    private static uint PseudoHeaderSum(ReadOnlySpan<byte> frame)
    {
        var ip = frame.Slice(EthernetBytes, IpBytes);
        int udpLength = BinaryPrimitives.ReadUInt16BigEndian(ip[2..]) - IpBytes;
        uint sum = Sum(ip.Slice(12, 8), 0);
        return sum + 17 + (uint)udpLength;
    }

    private static uint Sum(ReadOnlySpan<byte> bytes, uint sum)
    {
        for (int i = 0; i + 1 < bytes.Length; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(bytes[i..]);
        if (bytes.Length % 2 == 1) sum += (uint)bytes[^1] << 8;
        return sum;
    }

    private static ushort Fold(uint sum)
    {
        while (sum > 0xFFFF) sum = (sum & 0xFFFF) + (sum >> 16);
        return (ushort)sum;
    }
}
