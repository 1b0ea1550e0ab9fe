using System.Diagnostics;
using System.Runtime.InteropServices;

namespace KvmSharp.Tests.Integration.Net;

/// <summary>
/// A network namespace the test creates (ip netns add) and removes on dispose, with a tap at
/// <see cref="HostAddress"/>/24 and a tun. Code that must see the namespace runs on a thread that
/// joined it (setns is per thread), through <see cref="Run{T}"/>; file descriptors opened there stay
/// in it afterwards, whichever thread uses them.
/// </summary>
internal sealed partial class NetNamespace : IDisposable
{
    public const string Tap = "ktap0";
    public const string Tun = "ktun0";
    public const string HostAddress = "10.78.0.1";
    public const string GuestAddress = "10.78.0.2";
    public const string TapMac = "02:00:00:78:00:01";
    private const int CLONE_NEWNET = 0x40000000;
    private static int _next;

    public NetNamespace(int mtu = 1500)
    {
        Name = $"kvs-it-{Environment.ProcessId}-{Interlocked.Increment(ref _next)}";
        Ip($"netns add {Name}");
        try
        {
            Ip($"-n {Name} link set lo up");
            Ip($"-n {Name} tuntap add dev {Tap} mode tap");
            Ip($"-n {Name} tuntap add dev {Tun} mode tun");
            Ip($"-n {Name} link set {Tap} address {TapMac} mtu {mtu}");
            Ip($"-n {Name} addr add {HostAddress}/24 dev {Tap}");
            Ip($"-n {Name} link set {Tap} up");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public string Name { get; }

    /// <summary>Why these tests cannot run here (not root, no /dev/net/tun, no ip), or null.</summary>
    public static string? Unavailable()
    {
        if (Environment.UserName != "root") return "creating network namespaces and taps needs root";
        if (!File.Exists("/dev/net/tun")) return "/dev/net/tun is missing (modprobe tun)";
        if (!File.Exists("/usr/sbin/ip") && !File.Exists("/sbin/ip") && !File.Exists("/usr/bin/ip")) return "ip (iproute2) is not installed";
        return null;
    }

    /// <summary>Tell the namespace that <paramref name="address"/> is at <paramref name="mac"/> on the tap (no ARP needed).</summary>
    public void AddNeighbour(string address, string mac) => Ip($"-n {Name} neigh replace {address} lladdr {mac} dev {Tap} nud permanent");

    /// <summary>Run <paramref name="work"/> on a thread inside the namespace.</summary>
    public T Run<T>(Func<T> work)
    {
        T result = default!;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var handle = File.OpenHandle($"/run/netns/{Name}");
                if (setns((int)handle.DangerousGetHandle(), CLONE_NEWNET) != 0)
                    throw new IOException($"setns({Name}) failed: errno {Marshal.GetLastPInvokeError()}");
                result = work();
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        thread.Start();
        thread.Join();
        if (failure is not null) throw new AggregateException(failure);
        return result;
    }

    public void Dispose()
    {
        var ip = Process.Start(new ProcessStartInfo("ip", $"netns del {Name}") { RedirectStandardError = true })!;
        ip.StandardError.ReadToEnd();
        ip.WaitForExit();
    }

    /// <summary>Whether the namespace still exists (ip netns list).</summary>
    public static bool Exists(string name) => Ip("netns list").Split('\n').Any(line => line.Split(' ')[0] == name);

    private static string Ip(string arguments)
    {
        using var ip = Process.Start(new ProcessStartInfo("ip", arguments) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        string output = ip.StandardOutput.ReadToEnd();
        string errors = ip.StandardError.ReadToEnd();
        ip.WaitForExit();
        if (ip.ExitCode != 0) throw new InvalidOperationException($"ip {arguments} failed ({ip.ExitCode}): {errors}");
        return output;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setns(int fd, int nstype);
}
