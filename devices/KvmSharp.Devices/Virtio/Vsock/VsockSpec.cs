using System.Globalization;
using System.Text;

namespace KvmSharp.Devices.Virtio.Vsock;

/// <summary>
/// <c>--vsock cid=N,socket=PATH</c>: a virtio-vsock device for context id N (3 or more: 0-2 are
/// reserved, 2 is the host) served through Firecracker's hybrid protocol on the unix socket PATH
/// (host-initiated connections) and PATH_PORT (guest-initiated ones). Parse with <see cref="TryParse"/>;
/// <see cref="VsockSocketPath.WhyUnsafe"/> checks the directory before the VM is built.
/// </summary>
/// <param name="Cid">The guest's context id.</param>
/// <param name="SocketPath">Where KvmSharp listens; guest connections to port P go to <c>SocketPath_P</c>.</param>
public sealed record VsockSpec(uint Cid, string SocketPath)
{
    public const string Syntax = "cid=N,socket=PATH";

    /// <summary>The first context id a guest may have (0: hypervisor, 1: local, 2: host).</summary>
    public const uint MinimumCid = 3;

    /// <summary>sun_path holds 108 bytes with the terminating NUL; PATH_4294967295 must fit.</summary>
    public const int MaxSocketPathBytes = 107 - 11;

    /// <summary>Parse a <c>--vsock</c> value; false with a one-line error naming the bad key or value and the fix.</summary>
    public static bool TryParse(string text, out VsockSpec? spec, out string? error)
    {
        spec = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            error = $"--vsock: empty value; give {Syntax}";
            return false;
        }

        uint? cid = null;
        string? path = null;
        foreach (string part in text.Split(','))
        {
            int equals = part.IndexOf('=');
            if (equals <= 0)
            {
                error = $"--vsock: '{part}' is not KEY=VALUE; give {Syntax}";
                return false;
            }

            string key = part[..equals], value = part[(equals + 1)..];
            switch (key)
            {
                case "cid" when cid is not null:
                case "socket" when path is not null:
                    error = $"--vsock: {key}= is given twice; give it once";
                    return false;
                case "cid":
                    if (!uint.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out uint parsed) || parsed < MinimumCid || parsed == uint.MaxValue)
                    {
                        error = $"--vsock: cid={value} is not valid; give a whole number from {MinimumCid} to {uint.MaxValue - 1} (0-2 are reserved, 2 is the host)";
                        return false;
                    }

                    cid = parsed;
                    break;
                case "socket":
                    if (value.Length == 0)
                    {
                        error = "--vsock: socket= is empty; give the unix socket path (socket=PATH)";
                        return false;
                    }

                    if (Encoding.UTF8.GetByteCount(value) > MaxSocketPathBytes || value.Contains('\0'))
                    {
                        error = $"--vsock: socket={value} is longer than {MaxSocketPathBytes} bytes (a unix socket path, with _PORT appended, must fit in 108); give a shorter path";
                        return false;
                    }

                    path = value;
                    break;
                default:
                    error = $"--vsock: unknown key '{key}'; give {Syntax}";
                    return false;
            }
        }

        if (cid is null || path is null)
        {
            error = $"--vsock: {(cid is null ? "cid=N" : "socket=PATH")} is missing; give {Syntax}";
            return false;
        }

        spec = new VsockSpec(cid.Value, path);
        error = null;
        return true;
    }
}
