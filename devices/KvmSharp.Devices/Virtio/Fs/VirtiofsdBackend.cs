using System.Diagnostics;
using KvmSharp.Devices.VhostUser;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace KvmSharp.Devices.Virtio.Fs;

/// <summary>
/// A virtiofsd process serving one share, started and supervised by KvmSharp. It listens on a vhost-user
/// socket in a private runtime directory (mode 0700, the socket 0600), runs with its namespace sandbox
/// (it pivots into the shared directory, so the guest cannot reach outside it), read-only when asked, and
/// gets no descriptor of the VMM's (everything KvmSharp opens is CLOEXEC; guest memory arrives later by
/// SCM_RIGHTS). Its stdout and stderr are captured (the guest's console stays clean); an exit nobody asked
/// for is reported once through the handler given to <see cref="Start"/>, with the last lines it wrote.
/// Disposing closes the connection (virtiofsd then exits), kills it if it lingers, and removes the directory.
/// </summary>
public sealed class VirtiofsdBackend : IDisposable
{
    /// <summary>Where Debian 12 (bookworm) installs QEMU's C virtiofsd (package qemu-system-common).</summary>
    public const string QemuVirtiofsdPath = "/usr/lib/qemu/virtiofsd";

    /// <summary>How the user gets one.</summary>
    public const string InstallHint = "install it: apt-get install virtiofsd (Debian 13 and later), or qemu-system-common (Debian 12, /usr/lib/qemu/virtiofsd)";

    private const int TailLines = 20;

    private readonly Process _process;
    private readonly ShareOptions _share;
    private readonly ILogger _logger;
    private readonly Queue<string> _tail = new();
    private readonly Action<string>? _onUnexpectedExit;
    private VhostUserChannel? _connection;
    private volatile bool _stopping;
    private volatile bool _running;
    private int _disposed;

    private VirtiofsdBackend(Process process, ShareOptions share, string runtimeDirectory, string socketPath, string command, ILogger logger, Action<string>? onUnexpectedExit)
    {
        _process = process;
        _share = share;
        RuntimeDirectory = runtimeDirectory;
        SocketPath = socketPath;
        Command = command;
        _logger = logger;
        _onUnexpectedExit = onUnexpectedExit;
    }

    /// <summary>virtiofsd's process id.</summary>
    public int ProcessId => _process.Id;

    /// <summary>The private directory holding the socket.</summary>
    public string RuntimeDirectory { get; }

    /// <summary>The vhost-user socket virtiofsd listens on.</summary>
    public string SocketPath { get; }

    /// <summary>The command line it was started with.</summary>
    public string Command { get; }

    /// <summary>Whether the process has ended.</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>The last lines virtiofsd wrote to stderr/stdout.</summary>
    public string OutputTail
    {
        get
        {
            lock (_tail)
            {
                return string.Join(" | ", _tail);
            }
        }
    }

    /// <summary>The virtiofsd to run: the first on PATH, else Debian 12's; null when there is none.</summary>
    public static string? Locate() => Locate(Environment.GetEnvironmentVariable("PATH"), [QemuVirtiofsdPath]);

    /// <summary><see cref="Locate()"/> with the search path and fallbacks given (for tests).</summary>
    public static string? Locate(string? searchPath, IReadOnlyList<string> fallbacks)
    {
        foreach (string directory in (searchPath ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(directory, "virtiofsd");
            if (IsExecutable(candidate))
            {
                return candidate;
            }
        }

        return fallbacks.FirstOrDefault(IsExecutable);
    }

    /// <summary>
    /// Start virtiofsd for <paramref name="share"/> and connect to it; returns once the connection stands.
    /// <paramref name="onUnexpectedExit"/> is called (once, on a pool thread) with a one-line reason if the
    /// process ends before <see cref="Dispose"/>. Throws <see cref="VirtiofsdException"/> when virtiofsd is
    /// missing (naming the package), cannot start, or does not listen within <paramref name="startTimeout"/>.
    /// </summary>
    public static VirtiofsdBackend Start(ShareOptions share, ILogger? logger = null, Action<string>? onUnexpectedExit = null, string? executable = null, TimeSpan? startTimeout = null)
    {
        ArgumentNullException.ThrowIfNull(share);
        logger ??= NullLogger.Instance;
        string binary = executable ?? Locate() ?? throw new VirtiofsdException($"share '{share.Tag}': virtiofsd was not found on PATH or at {QemuVirtiofsdPath}; {InstallHint}");
        if (!IsExecutable(binary))
        {
            throw new VirtiofsdException($"share '{share.Tag}': {binary} is not an executable virtiofsd; {InstallHint}");
        }

        if (!Directory.Exists(share.Path))
        {
            throw new VirtiofsdException($"share '{share.Tag}': directory {share.Path} does not exist");
        }

        // A directory only this user can enter (mkdtemp: 0700), short enough for a socket path.
        DirectoryInfo runtime = Directory.CreateTempSubdirectory("kvmsharp-vfs-");
        string socketPath = Path.Combine(runtime.FullName, "vhost-user.sock");
        Process? process = null;
        VirtiofsdBackend? backend = null;
        try
        {
            var flavour = VirtiofsdFlavour.Probe(binary);
            var start = BuildStartInfo(binary, flavour, share, socketPath);
            process = new Process { StartInfo = start, EnableRaisingEvents = true };
            string command = string.Join(' ', new[] { start.FileName }.Concat(start.ArgumentList));
            backend = new VirtiofsdBackend(process, share, runtime.FullName, socketPath, command, logger, onUnexpectedExit);
            process.OutputDataReceived += backend.OnOutput;
            process.ErrorDataReceived += backend.OnOutput;
            process.Exited += backend.OnExited;
            try
            {
                process.Start();
            }
            catch (System.ComponentModel.Win32Exception e)
            {
                throw new VirtiofsdException($"share '{share.Tag}': cannot start {binary}: {e.Message}; {InstallHint}", e);
            }

            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            process.StandardInput.Close();
            VirtioFsLog.BackendStarted(logger, share.Tag, process.Id, command);
            backend._connection = backend.Connect(startTimeout ?? TimeSpan.FromSeconds(30));
            // From here on an exit is news for the handler; before, Start's own exception tells it.
            backend._running = true;
            if (process.HasExited)
            {
                throw new VirtiofsdException($"share '{share.Tag}': {backend.DescribeExit()}");
            }

            return backend;
        }
        catch
        {
            if (backend is not null)
            {
                backend.Dispose();
            }
            else
            {
                process?.Dispose();
                TryDeleteDirectory(runtime.FullName);
            }

            throw;
        }
    }

    /// <summary>The connection to virtiofsd; the caller owns it from now on (a second call throws).</summary>
    public VhostUserChannel TakeConnection() =>
        Interlocked.Exchange(ref _connection, null) ?? throw new InvalidOperationException("the connection was already taken");

    /// <summary>Why the process ended, with its last output (for errors raised after a failed exchange).</summary>
    public string DescribeExit()
    {
        if (!_process.WaitForExit(TimeSpan.FromSeconds(2)))
        {
            return $"virtiofsd for share '{_share.Tag}' (pid {_process.Id}) is still running; its output: {OutputTail}";
        }

        _process.WaitForExit(); // the output is read to its end
        return $"virtiofsd for share '{_share.Tag}' (pid {_process.Id}) exited with status {_process.ExitCode}: {OutputTail}";
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stopping = true;
        Interlocked.Exchange(ref _connection, null)?.Dispose();
        try
        {
            // virtiofsd leaves once its front end hangs up; one that does not is killed.
            if (!_process.HasExited && !_process.WaitForExit(TimeSpan.FromSeconds(3)))
            {
                _process.Kill();
                _process.WaitForExit(TimeSpan.FromSeconds(5));
            }
        }
        catch (InvalidOperationException)
        {
            // It never started.
        }

        _process.Dispose();
        TryDeleteDirectory(RuntimeDirectory);
    }

    private static ProcessStartInfo BuildStartInfo(string binary, VirtiofsdFlavour flavour, ShareOptions share, string socketPath)
    {
        var arguments = new List<string>();
        if (flavour.SharedDirOption)
        {
            arguments.Add($"--socket-path={socketPath}");
            arguments.Add($"--shared-dir={share.Path}");
            arguments.Add("--sandbox=namespace");
            if (share.ReadOnly && flavour.ReadOnlyOption)
            {
                arguments.Add("--readonly");
            }
        }
        else
        {
            // QEMU's C virtiofsd (Debian 12): -o options.
            arguments.Add($"--socket-path={socketPath}");
            arguments.Add("-o");
            arguments.Add($"source={share.Path}");
            arguments.Add("-o");
            arguments.Add("sandbox=namespace");
        }

        ProcessStartInfo start;
        if (share.ReadOnly && !flavour.ReadOnlyOption)
        {
            // This virtiofsd cannot refuse writes itself: run it in a private mount namespace in which the
            // directory is a read-only bind mount. Its own sandbox binds the directory again, which keeps
            // the read-only flag, so every write fails with EROFS. The host's mounts are untouched.
            string unshare = LocateTool("unshare") ?? throw new VirtiofsdException(
                $"share '{share.Tag}': readonly=on with this virtiofsd ({binary}, which has no --readonly) needs unshare and mount from util-linux; install util-linux, or use virtiofsd 1.7 or later");
            start = new ProcessStartInfo(unshare);
            foreach (string argument in new[]
                     {
                         "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                         "mount --bind -- \"$1\" \"$1\" && mount -o remount,bind,ro -- \"$1\" && shift && exec \"$@\"",
                         "kvmsharp-virtiofsd-readonly", share.Path, binary,
                     })
            {
                start.ArgumentList.Add(argument);
            }
        }
        else
        {
            start = new ProcessStartInfo(binary);
        }

        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.UseShellExecute = false;
        start.RedirectStandardInput = true;
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.WorkingDirectory = "/";
        return start;
    }

    private VhostUserChannel Connect(TimeSpan timeout)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (true)
        {
            if (_process.HasExited)
            {
                throw new VirtiofsdException($"share '{_share.Tag}': {DescribeExit()}");
            }

            if (File.Exists(SocketPath))
            {
                // virtiofsd creates it under umask 077 already; make sure of 0600 before anyone connects.
                if (!OperatingSystem.IsWindows())
                {
                    File.SetUnixFileMode(SocketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
                }

                try
                {
                    return VhostUserChannel.Connect(SocketPath);
                }
                catch (VhostUserException e) when (e.Errno is 111 /* ECONNREFUSED: bound, not listening yet */ or 2 /* ENOENT */)
                {
                }
            }

            if (Environment.TickCount64 > deadline)
            {
                throw new VirtiofsdException($"share '{_share.Tag}': virtiofsd (pid {_process.Id}) did not listen on {SocketPath} within {timeout.TotalSeconds:0} s; its output: {OutputTail}");
            }

            Thread.Sleep(10);
        }
    }

    private void OnOutput(object sender, DataReceivedEventArgs e)
    {
        if (e.Data is not { } line)
        {
            return;
        }

        lock (_tail)
        {
            _tail.Enqueue(line);
            while (_tail.Count > TailLines)
            {
                _tail.Dequeue();
            }
        }

        VirtioFsLog.BackendOutput(_logger, _share.Tag, line);
    }

    private void OnExited(object? sender, EventArgs e)
    {
        if (_stopping || !_running)
        {
            return;
        }

        string message = DescribeExit();
        if (_stopping)
        {
            return;
        }

        VirtioFsLog.BackendExited(_logger, message);
        _onUnexpectedExit?.Invoke(message);
    }

    private static string? LocateTool(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/bin", "/bin"]).Select(d => Path.Combine(d, name)).FirstOrDefault(IsExecutable);

    private static bool IsExecutable(string path) =>
        !OperatingSystem.IsWindows() && File.Exists(path) && (File.GetUnixFileMode(path) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) != 0;

    private static void TryDeleteDirectory(string path)
    {
        try
        {
            Directory.Delete(path, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
