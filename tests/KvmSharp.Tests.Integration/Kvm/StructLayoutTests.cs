using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using KvmSharp.Kvm.Interop;
using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;

namespace KvmSharp.Tests.Integration.Kvm;

/// <summary>
/// Proves every interop struct, ioctl number, capability and exit reason against the system's
/// &lt;linux/kvm.h&gt;: a generated C file of static_asserts, compiled by gcc.
/// </summary>
public sealed class StructLayoutTests
{
    // Names newer than the oldest header KvmSharp supports (Debian 12's, Linux 6.1): an assertion
    // mentioning the key compiles only where the header defines the macro of the value (Linux 6.8+).
    private static readonly Dictionary<string, string> GuardedNames = new()
    {
        ["KVM_EXIT_MEMORY_FAULT"] = "KVM_EXIT_MEMORY_FAULT",
        ["KVM_CAP_USER_MEMORY2"] = "KVM_CAP_USER_MEMORY2",
        ["kvm_userspace_memory_region2"] = "KVM_SET_USER_MEMORY_REGION2",
        ["KVM_SET_USER_MEMORY_REGION2"] = "KVM_SET_USER_MEMORY_REGION2",
    };

    [GccFact]
    public void Generated_static_asserts_compile_against_the_system_kvm_header()
    {
        string gcc = GccFactAttribute.Gcc ?? throw new InvalidOperationException("gcc is not on PATH");

        string source = GenerateAssertions(out int assertionCount);
        Assert.True(assertionCount > 150, $"only {assertionCount} assertions were generated");
        string path = Path.Combine(Path.GetTempPath(), $"kvmsharp-layout-{Environment.ProcessId}.c");
        File.WriteAllText(path, source);

        var start = new ProcessStartInfo(gcc, ["-std=c11", "-fsyntax-only", "-Werror", path]) { RedirectStandardError = true, RedirectStandardOutput = true };
        using var process = Process.Start(start)!;
        string errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"layout mismatch against <linux/kvm.h> (see {path}):\n{errors}");
        File.Delete(path);
    }

    // The names only newer headers define are proven against one (Debian's backported linux-libc-dev,
    // fetched by scripts/kvm-headers/fetch-newer-kvm-headers.sh); the guards must all be defined there,
    // so none of their assertions is skipped by the preprocessor.
    [NewerKvmHeadersFact]
    public void Generated_static_asserts_compile_against_a_newer_kvm_header_with_every_guarded_name()
    {
        string gcc = GccFactAttribute.Gcc ?? throw new InvalidOperationException("gcc is not on PATH");
        var includes = NewerKvmHeadersFactAttribute.IncludeArguments;

        var source = new StringBuilder();
        foreach (string guard in GuardedNames.Values.Distinct())
            source.Append($"#include <linux/kvm.h>\n#ifndef {guard}\n#error \"the newer header does not define {guard}\"\n#endif\n");
        source.Append(GenerateAssertions(out int assertionCount));
        string path = Path.Combine(Path.GetTempPath(), $"kvmsharp-layout-newer-{Environment.ProcessId}.c");
        File.WriteAllText(path, source.ToString());

        using var process = Process.Start(new ProcessStartInfo(gcc, ["-std=c11", "-fsyntax-only", "-Werror", .. includes, path]) { RedirectStandardError = true })!;
        string errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"layout mismatch against the newer <linux/kvm.h> ({string.Join(' ', includes)}; see {path}):\n{errors}");
        Assert.True(assertionCount > 150);
        File.Delete(path);
    }

    [GccFact]
    public void A_wrong_layout_is_caught_by_the_generator()
    {
        // The check can fail: a deliberately wrong assertion must not compile.
        string gcc = GccFactAttribute.Gcc ?? throw new InvalidOperationException("gcc is not on PATH");
        string path = Path.Combine(Path.GetTempPath(), $"kvmsharp-layout-bad-{Environment.ProcessId}.c");
        File.WriteAllText(path, "#include <stddef.h>\n#include <linux/kvm.h>\n_Static_assert(sizeof(struct kvm_regs) == 143, \"kvm_regs\");\n");
        using var process = Process.Start(new ProcessStartInfo(gcc, ["-std=c11", "-fsyntax-only", path]) { RedirectStandardError = true })!;
        process.StandardError.ReadToEnd();
        process.WaitForExit();
        File.Delete(path);
        Assert.NotEqual(0, process.ExitCode);
    }

    internal static string GenerateAssertions(out int count)
    {
        var c = new StringBuilder("#include <stddef.h>\n#include <linux/kvm.h>\n\n");
        count = 0;
        var assembly = typeof(kvm_regs).Assembly;

        foreach (var type in assembly.GetTypes().Where(t => t.GetCustomAttribute<KvmLayoutAttribute>() is not null).OrderBy(t => t.Name))
        {
            var layout = type.GetCustomAttribute<KvmLayoutAttribute>()!;
            int size = Marshal.SizeOf(type);
            string prefix = layout.MemberPath.Length > 0 ? layout.MemberPath + "." : "";
            string sizeExpression = layout.MemberPath.Length > 0 ? $"sizeof((({layout.CType} *)0)->{layout.MemberPath})" : $"sizeof({layout.CType})";
            // A union member may be smaller than the C member when trailing members are unused; a whole struct must match.
            string sizeOperator = layout.MemberPath.Length > 0 ? ">=" : "==";
            Emit(c, ref count, $"{sizeExpression} {sizeOperator} {size}", $"{type.Name} size {size}");
            foreach (var field in type.GetFields(BindingFlags.Public | BindingFlags.Instance))
            {
                string cName = field.GetCustomAttribute<KvmFieldNameAttribute>()?.CName ?? field.Name;
                int offset = layout.BaseOffset + (int)Marshal.OffsetOf(type, field.Name);
                Emit(c, ref count, $"offsetof({layout.CType}, {prefix}{cName}) == {offset}", $"{type.Name}.{field.Name} at {offset}");
            }
        }

        foreach (var field in typeof(KvmIoctls).GetFields(BindingFlags.Public | BindingFlags.Static).Where(f => f.FieldType == typeof(uint)))
            Emit(c, ref count, $"{field.Name} == 0x{(uint)field.GetValue(null)!:x}u", field.Name);
        foreach (var cap in Enum.GetValues<KvmCap>())
            Emit(c, ref count, $"{cap} == {(int)cap}", cap.ToString());
        foreach (var reason in Enum.GetValues<KvmExitReason>())
            Emit(c, ref count, $"{reason} == {(uint)reason}", reason.ToString());
        Emit(c, ref count, $"KVM_MEM_LOG_DIRTY_PAGES == {KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES}", "KVM_MEM_LOG_DIRTY_PAGES");
        Emit(c, ref count, $"KVM_MEM_READONLY == {KvmMemFlags.KVM_MEM_READONLY}", "KVM_MEM_READONLY");
        Emit(c, ref count, $"KVM_RUN_X86_SMM == {KvmRunFlags.KVM_RUN_X86_SMM}", "KVM_RUN_X86_SMM");
        Emit(c, ref count, $"KVM_PIT_SPEAKER_DUMMY == {KvmPitFlags.KVM_PIT_SPEAKER_DUMMY}", "KVM_PIT_SPEAKER_DUMMY");
        Emit(c, ref count, $"KVM_EXIT_IO_IN == {KvmRunIoDirection.KVM_EXIT_IO_IN} && KVM_EXIT_IO_OUT == {KvmRunIoDirection.KVM_EXIT_IO_OUT}", "KVM_EXIT_IO_*");
        Emit(c, ref count, $"KVM_DIRTY_GFN_F_DIRTY == {KvmDirtyGfnFlags.KVM_DIRTY_GFN_F_DIRTY} && KVM_DIRTY_GFN_F_RESET == {KvmDirtyGfnFlags.KVM_DIRTY_GFN_F_RESET}", "KVM_DIRTY_GFN_F_*");
        Emit(c, ref count, $"KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE == {KvmDirtyLogProtectFlags.KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE} && KVM_DIRTY_LOG_INITIALLY_SET == {KvmDirtyLogProtectFlags.KVM_DIRTY_LOG_INITIALLY_SET}", "KVM_DIRTY_LOG_*");
        Emit(c, ref count, $"KVM_DIRTY_LOG_PAGE_OFFSET == {KvmDirtyRingLayout.KVM_DIRTY_LOG_PAGE_OFFSET}", "KVM_DIRTY_LOG_PAGE_OFFSET");
        Emit(c, ref count, $"KVM_SYSTEM_EVENT_SHUTDOWN == {KvmSystemEventType.KVM_SYSTEM_EVENT_SHUTDOWN} && KVM_SYSTEM_EVENT_RESET == {KvmSystemEventType.KVM_SYSTEM_EVENT_RESET} && KVM_SYSTEM_EVENT_CRASH == {KvmSystemEventType.KVM_SYSTEM_EVENT_CRASH}", "KVM_SYSTEM_EVENT_*");
        return c.ToString();
    }

    private static void Emit(StringBuilder c, ref int count, string condition, string what)
    {
        string? guard = GuardedNames.Where(g => condition.Contains(g.Key)).Select(g => g.Value).FirstOrDefault();
        if (guard is not null) c.Append($"#ifdef {guard}\n");
        c.Append($"_Static_assert({condition}, \"KvmSharp: {what}\");\n");
        if (guard is not null) c.Append("#endif\n");
        count++;
    }
}
