using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Block;
using KvmSharp.Devices.Virtio.Console;
using KvmSharp.Devices.Virtio.Queues;
using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;

namespace KvmSharp.Tests.Integration.Kvm;

/// <summary>
/// Proves the virtio ring, block and console structs and constants against the system's
/// &lt;linux/virtio_ring.h&gt;, &lt;linux/virtio_blk.h&gt; and &lt;linux/virtio_console.h&gt;: a generated
/// C file of static_asserts (as <see cref="StructLayoutTests"/> does for &lt;linux/kvm.h&gt;), compiled by gcc.
/// </summary>
public sealed class VirtioStructLayoutTests
{
    private static readonly string[] Headers = ["linux/virtio_ring.h", "linux/virtio_blk.h", "linux/virtio_console.h", "linux/virtio_ids.h", "linux/virtio_config.h", "linux/virtio_fs.h", "linux/vhost_types.h"];

    [GccFact]
    public void Generated_static_asserts_compile_against_the_system_virtio_headers()
    {
        string source = GenerateAssertions(out int count);
        Assert.True(count > 80, $"only {count} assertions were generated");
        var (exitCode, errors, path) = Compile(source, "virtio-layout");
        Assert.True(exitCode == 0, $"layout mismatch against the virtio headers (see {path}):\n{errors}");
        File.Delete(path);
    }

    [GccFact]
    public void A_wrong_offset_or_constant_is_caught()
    {
        string source = GenerateAssertions(out _);
        string wrongOffset = source.Replace("offsetof(struct vring_desc, next) == 14", "offsetof(struct vring_desc, next) == 12", StringComparison.Ordinal);
        string wrongConstant = source.Replace("VIRTIO_BLK_T_GET_ID == 8", "VIRTIO_BLK_T_GET_ID == 9", StringComparison.Ordinal);
        Assert.NotEqual(source, wrongOffset);
        Assert.NotEqual(source, wrongConstant);
        foreach (string wrong in new[] { wrongOffset, wrongConstant })
        {
            var (exitCode, _, path) = Compile(wrong, "virtio-layout-bad");
            File.Delete(path);
            Assert.NotEqual(0, exitCode);
        }
    }

    private static (int ExitCode, string Errors, string Path) Compile(string source, string name)
    {
        string gcc = GccFactAttribute.Gcc ?? throw new InvalidOperationException("gcc is not on PATH");
        string path = Path.Combine(Path.GetTempPath(), $"kvmsharp-{name}-{Environment.ProcessId}.c");
        File.WriteAllText(path, source);
        using var process = Process.Start(new ProcessStartInfo(gcc, ["-std=c11", "-fsyntax-only", "-Werror", path]) { RedirectStandardError = true })!;
        string errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, errors, path);
    }

    internal static string GenerateAssertions(out int count)
    {
        var c = new StringBuilder("#include <stddef.h>\n");
        foreach (string header in Headers)
        {
            c.Append($"#include <{header}>\n");
        }

        c.Append('\n');
        count = 0;
        var assembly = typeof(IVirtioDevice).Assembly;
        foreach (var type in assembly.GetTypes().Where(t => t.GetCustomAttribute<VirtioLayoutAttribute>() is not null).OrderBy(t => t.Name))
        {
            var layout = type.GetCustomAttribute<VirtioLayoutAttribute>()!;
            Assert.Contains(layout.Header, Headers);
            int size = Marshal.SizeOf(type);
            Emit(c, ref count, $"sizeof({layout.CType}) {(layout.SizeIsMinimum ? ">=" : "==")} {size}", $"{type.Name} size {size}");
            foreach (var field in type.GetFields(BindingFlags.Public | BindingFlags.Instance))
            {
                string cName = field.GetCustomAttribute<VirtioFieldNameAttribute>()?.CName ?? field.Name;
                int offset = (int)Marshal.OffsetOf(type, field.Name);
                Emit(c, ref count, $"offsetof({layout.CType}, {cName}) == {offset}", $"{type.Name}.{field.Name} at {offset}");
                Emit(c, ref count, $"sizeof((({layout.CType} *)0)->{cName}) == {Marshal.SizeOf(field.FieldType)}", $"{type.Name}.{field.Name} size");
            }
        }

        foreach (var holder in new[] { typeof(VringFlags), typeof(VirtioBlockFeatures), typeof(VirtioConsoleFeatures) })
        {
            foreach (var field in holder.GetFields(BindingFlags.Public | BindingFlags.Static).Where(f => f.IsLiteral))
            {
                Emit(c, ref count, $"{field.Name} == {Convert.ToUInt64(field.GetValue(null))}u", field.Name);
            }
        }

        foreach (var value in Enum.GetValues<VirtioBlockRequestType>())
        {
            Emit(c, ref count, $"{value} == {(uint)value}u", value.ToString());
        }

        foreach (var value in Enum.GetValues<VirtioBlockStatus>())
        {
            Emit(c, ref count, $"{value} == {(byte)value}", value.ToString());
        }

        foreach (var value in Enum.GetValues<VirtioConsoleControlEvent>())
        {
            Emit(c, ref count, $"{value} == {(ushort)value}", value.ToString());
        }

        Emit(c, ref count, $"VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP == {virtio_blk_discard_write_zeroes.VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP}u", "VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP");
        Emit(c, ref count, $"offsetof(struct virtio_blk_config, wce) == {virtio_blk_config.WceOffset}", "virtio_blk_config.WceOffset");
        Emit(c, ref count, $"(1ULL << VIRTIO_RING_F_INDIRECT_DESC) == {VirtioFeatureBits.VIRTIO_RING_F_INDIRECT_DESC}ull", "VIRTIO_RING_F_INDIRECT_DESC");
        Emit(c, ref count, $"(1ULL << VIRTIO_RING_F_EVENT_IDX) == {VirtioFeatureBits.VIRTIO_RING_F_EVENT_IDX}ull", "VIRTIO_RING_F_EVENT_IDX");
        Emit(c, ref count, $"(1ULL << VIRTIO_F_VERSION_1) == {VirtioFeatureBits.VIRTIO_F_VERSION_1}ull", "VIRTIO_F_VERSION_1");
        Emit(c, ref count, $"VIRTIO_ID_BLOCK == {(int)VirtioDeviceType.Block} && VIRTIO_ID_CONSOLE == {(int)VirtioDeviceType.Console} && VIRTIO_ID_RNG == {(int)VirtioDeviceType.Entropy}", "VIRTIO_ID_*");
        return c.ToString();
    }

    private static void Emit(StringBuilder c, ref int count, string condition, string what)
    {
        c.Append($"_Static_assert({condition}, \"KvmSharp: {what}\");\n");
        count++;
    }
}
