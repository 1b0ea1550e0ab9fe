using System.Buffers.Binary;
using CsCheck;
using KvmSharp.Vmm.Boot.Multiboot;
using Xunit;

namespace KvmSharp.Tests.Unit.Boot;

/// <summary>
/// Random and mutated multiboot kernels (ELF program headers, the multiboot header and its address fields,
/// truncation) through detection, parsing and placement: the only outcomes allowed are success,
/// <see cref="InvalidDataException"/> and <see cref="Vmm.Boot.GuestInputException"/>, each case bounded in time.
/// </summary>
public sealed class MultibootParserPropertyTests
{
    private const long Iterations = 20_000;

    private static readonly ulong[] Extremes =
    [
        0, 1, 2, 0x10, 0x7F, 0x80, 0xFF, 0x1000, 0xFFFF, 0x10000, 0x100000, 0x7FFFFFFF, 0x80000000, 0xFFFFF000, 0xFFFFFFF4, 0xFFFFFFFF,
        0x100000000, ulong.MaxValue,
    ];

    private static readonly int[] ElfFields =
    [
        4, 5, 18, 24, 28, 42, 44,
        .. new[] { 0, 4, 8, 12, 16, 20 }.Select(f => SyntheticMultiboot.FirstProgramHeader + f),
        .. new[] { 0, 4, 8, 12, 16, 20 }.Select(f => SyntheticMultiboot.SecondProgramHeader + f),
        .. new[] { 0, 4, 8 }.Select(f => SyntheticMultiboot.HeaderOffset + f),
    ];

    private static readonly int[] AddressFieldOffsets = [.. Enumerable.Range(0, 8).Select(i => 0x40 + 4 * i)];

    private readonly record struct Edit(int Position, int Width, ulong Value, bool Truncate);

    private static Gen<Edit> EditOf(int length, int[] fields) => Gen.Frequency(
        (6, Gen.Select(Gen.OneOf(Gen.OneOf(fields), Gen.Int[0, length - 1]), Gen.OneOf(1, 2, 4), Gen.Int[0, Extremes.Length - 1],
            (position, width, value) => new Edit(position, width, Extremes[value], false))),
        (3, Gen.Select(Gen.Int[0, length - 1], Gen.Byte, (position, value) => new Edit(position, 1, value, false))),
        (1, Gen.Int[0, length].Select(cut => new Edit(cut, 0, 0, true))));

    // Edits keep a header's checksum right half the time, so the deeper checks are reached too.
    private static byte[] Apply(byte[] valid, Edit[] edits, int headerOffset, bool fixChecksum)
    {
        var file = (byte[])valid.Clone();
        Span<byte> value = stackalloc byte[8];
        foreach (var edit in edits)
        {
            if (edit.Truncate)
            {
                file = file[..Math.Min(edit.Position, file.Length)];
                continue;
            }
            BinaryPrimitives.WriteUInt64LittleEndian(value, edit.Value);
            for (int i = 0; i < edit.Width && edit.Position + i < file.Length; i++) file[edit.Position + i] = value[i];
        }
        if (fixChecksum && file.Length >= headerOffset + 12)
        {
            uint flags = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(headerOffset + 4));
            BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(headerOffset), SyntheticMultiboot.Magic);
            BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(headerOffset + 8), unchecked(0u - SyntheticMultiboot.Magic - flags));
        }
        return file;
    }

    private static readonly Gen<(ulong Memory, ulong[] Modules, int CommandLine)> Placement = Gen.Select(
        Gen.OneOf(1UL << 20, 2UL << 20, 64UL << 20, 3UL << 30, 16UL << 30),
        Gen.OneOf(Gen.Const(Array.Empty<ulong>()), Gen.Const(new ulong[] { 4096 }), Gen.Const(new ulong[] { 1, 100UL << 20 })),
        Gen.OneOf(0, 100, 4096, 600 << 10));

    private static void DetectParseAndPlace(byte[] file, (ulong Memory, ulong[] Modules, int CommandLine) placement)
    {
        if (!MultibootLoader.IsMultiboot(file, "fuzzed")) return;
        var modules = placement.Modules.Select((_, i) => new MultibootModule($"m{i}", $"m{i}")).ToList();
        var config = new MultibootBootConfig("kernel", modules, new string('x', placement.CommandLine));
        MultibootLoader.Check(file, "fuzzed", config, placement.Memory, placement.Modules);
        var kernel = MultibootKernel.Parse(file, "fuzzed");
        Assert.All(kernel.Segments, s => Assert.True(s.End <= MultibootKernel.LoadLimit && (ulong)s.Bytes.Length <= s.MemorySize));
        Assert.Contains(kernel.Segments, s => s.HoldsCode(kernel.Entry));
    }

    [Fact]
    public void Mutated_multiboot_elf_files_parse_or_are_refused()
    {
        var valid = SyntheticMultiboot.Elf();
        DetectParseAndPlace(valid, (64UL << 20, [4096], 100));
        Gen.Select(EditOf(valid.Length, ElfFields).Array[1, 6], Gen.Bool, Placement)
            .Sample(t => BoundedParse.SucceedsOrRefuses(Apply(valid, t.Item1, SyntheticMultiboot.HeaderOffset, t.Item2), f => DetectParseAndPlace(f, t.Item3)), iter: Iterations);
    }

    [Fact]
    public void Mutated_a_out_kludge_kernels_parse_or_are_refused()
    {
        var valid = SyntheticMultiboot.AddressFields();
        DetectParseAndPlace(valid, (64UL << 20, [4096], 100));
        Gen.Select(EditOf(valid.Length, AddressFieldOffsets).Array[1, 6], Gen.Bool, Placement)
            .Sample(t => BoundedParse.SucceedsOrRefuses(Apply(valid, t.Item1, 0x40, t.Item2), f => DetectParseAndPlace(f, t.Item3)), iter: Iterations);
    }

    // Random bytes with a valid multiboot header at a random aligned offset (flag 16 or not).
    [Fact]
    public void Random_bytes_with_a_multiboot_header_parse_or_are_refused()
    {
        Gen.Select(Gen.Byte.Array[12, 3000], Gen.Int[0, 700], Gen.Bool, Gen.Bool, Placement)
            .Sample(t =>
            {
                var (bytes, slot, addressFields, elf, placement) = t;
                var file = (byte[])bytes.Clone();
                int at = Math.Min(slot * 4, (file.Length - 12) & ~3);
                uint flags = addressFields ? 0x10003u : 0x3u;
                BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(at), SyntheticMultiboot.Magic);
                BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(at + 4), flags);
                BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(at + 8), unchecked(0u - SyntheticMultiboot.Magic - flags));
                if (elf && at >= 4) "\u007fELF"u8.CopyTo(file);
                BoundedParse.SucceedsOrRefuses(file, f => DetectParseAndPlace(f, placement));
            }, iter: Iterations);
    }
}
