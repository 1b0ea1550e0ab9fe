using System.Globalization;
using System.Text;

namespace KvmSharp.Cli;

/// <summary>
/// The control API's settings of `run` (--api-sock, --wait-for-start, --no-api), checked before the VM exists. The API
/// listens on --api-sock, or on the first socket systemd passes (LISTEN_PID/LISTEN_FDS, socket activation).
/// </summary>
public static class ApiSettings
{
    /// <summary>The first file descriptor systemd passes (SD_LISTEN_FDS_START).</summary>
    public const int SystemdFirstSocket = 3;

    // sun_path holds 108 bytes, the terminating NUL included.
    private const int MaxSocketPathBytes = 107;

    /// <param name="SocketPath">The socket file to create (0600), or the name of systemd's socket when <paramref name="SystemdSocket"/> is set.</param>
    /// <param name="SystemdSocket">The descriptor systemd passed, or null.</param>
    /// <param name="WaitForStart">Boot nothing until PUT /actions InstanceStart.</param>
    public sealed record Endpoint(string? SocketPath, int? SystemdSocket, bool WaitForStart)
    {
        /// <summary>For messages: the path, or systemd's socket.</summary>
        public string DisplayName => SystemdSocket is { } fd ? $"systemd's socket (fd {fd}{(SocketPath is null ? "" : $", {SocketPath}")})" : SocketPath!;
    }

    internal static Endpoint? Validate(RunOptions options)
    {
        bool noApi = RunOptions.Switch(RunSetting.NoApi, options.NoApi);
        bool wait = RunOptions.Switch(RunSetting.WaitForStart, options.WaitForStart);
        if (noApi)
        {
            if (wait) throw new OptionsException(RunSetting.WaitForStart, options.WaitForStart!, "--wait-for-start needs the API; drop --no-api (or --wait-for-start)");
            return null;
        }
        int? systemd = SystemdSocket();
        if (options.ApiSock is null && systemd is null)
        {
            if (wait) throw new OptionsException(RunSetting.WaitForStart, options.WaitForStart!, "--wait-for-start needs --api-sock PATH (the VM is started through the API)");
            return null;
        }
        if (options.ApiSock is { } path && systemd is null) CheckSocketPath(path);
        return new Endpoint(options.ApiSock, systemd, wait);
    }

    private static void CheckSocketPath(string path)
    {
        if (path.Trim().Length == 0) throw new OptionsException(RunSetting.ApiSock, path, "give the path of the socket to create, e.g. /run/kvmsharp/vm.sock");
        if (Encoding.UTF8.GetByteCount(path) > MaxSocketPathBytes)
            throw new OptionsException(RunSetting.ApiSock, path, $"a Unix socket path holds at most {MaxSocketPathBytes} bytes; give a shorter path");
        string full = Path.GetFullPath(path);
        string? directory = Path.GetDirectoryName(full);
        if (directory is not null && !Directory.Exists(directory))
            throw new OptionsException(RunSetting.ApiSock, path, $"the directory {directory} does not exist; create it first");
        if (Directory.Exists(full)) throw new OptionsException(RunSetting.ApiSock, path, "is a directory; give the path of the socket to create");
        if (File.Exists(full) && !Api.UnixSocketFile.IsSocket(full))
            throw new OptionsException(RunSetting.ApiSock, path, "exists and is not a socket; give a new path (KvmSharp replaces only a socket nobody listens on)");
    }

    /// <summary>fd 3 when systemd passed this process at least one socket (LISTEN_PID is ours, LISTEN_FDS ≥ 1), as sd_listen_fds(3) decides.</summary>
    public static int? SystemdSocket()
    {
        string? pid = Environment.GetEnvironmentVariable("LISTEN_PID"), count = Environment.GetEnvironmentVariable("LISTEN_FDS");
        if (pid is null || count is null) return null;
        if (!int.TryParse(pid, NumberStyles.None, CultureInfo.InvariantCulture, out int forPid) || forPid != Environment.ProcessId) return null;
        if (!int.TryParse(count, NumberStyles.None, CultureInfo.InvariantCulture, out int fds) || fds < 1) return null;
        return SystemdFirstSocket;
    }
}
