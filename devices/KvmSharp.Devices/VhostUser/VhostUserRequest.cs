namespace KvmSharp.Devices.VhostUser;

/// <summary>
/// Front-end message types of the vhost-user protocol (QEMU's docs/interop/vhost-user.rst, "Front-end
/// message types"); the names are the specification's without the VHOST_USER_ prefix. Only the
/// requests KvmSharp sends are listed.
/// </summary>
public enum VhostUserRequest : uint
{
    GET_FEATURES = 1,
    SET_FEATURES = 2,
    SET_OWNER = 3,
    SET_MEM_TABLE = 5,
    SET_VRING_NUM = 8,
    SET_VRING_ADDR = 9,
    SET_VRING_BASE = 10,
    GET_VRING_BASE = 11,
    SET_VRING_KICK = 12,
    SET_VRING_CALL = 13,
    GET_PROTOCOL_FEATURES = 15,
    SET_PROTOCOL_FEATURES = 16,
    SET_VRING_ENABLE = 18,
}
