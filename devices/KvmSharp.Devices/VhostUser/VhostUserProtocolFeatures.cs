namespace KvmSharp.Devices.VhostUser;

/// <summary>Protocol feature bits (GET/SET_PROTOCOL_FEATURES) KvmSharp knows; bit numbers from the vhost-user specification.</summary>
[Flags]
public enum VhostUserProtocolFeatures : ulong
{
    None = 0,
    MQ = 1UL << 0,
    LOG_SHMFD = 1UL << 1,
    REPLY_ACK = 1UL << 3,
    CONFIG = 1UL << 9,
    CONFIGURE_MEM_SLOTS = 1UL << 15,
}
