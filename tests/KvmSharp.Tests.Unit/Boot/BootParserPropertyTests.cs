using System.Buffers.Binary;
using CsCheck;
using KvmSharp.Vmm.Boot.Linux;
using Xunit;

namespace KvmSharp.Tests.Unit.Boot;

/// <summary>
/// Random and mutated inputs to every parser of untrusted kernel bytes (bzImage header, ELF program
/// headers, PVH notes, and the placement that follows from them): the only outcomes allowed are
/// success and <see cref="InvalidDataException"/>, each case bounded in time.
/// </summary>
public sealed class BootParserPropertyTests
{
    private const long Iterations = 20_000;

    // One edit of a valid image: overwrite a little-endian field of 1, 2, 4 or 8 bytes, or truncate.
    private readonly record struct Edit(int Position, int Width, ulong Value, bool Truncate);

    private static readonly ulong[] Extremes =
    [
        0, 1, 2, 0x10, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFF4, 0xFFFFFFFF,
        0x100000000, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, ulong.MaxValue - 15, ulong.MaxValue,
    ];

    // Fields the loaders read: the setup header, and the ELF header, program headers and note.
    private static readonly int[] BzImageFields = [0x1F1, 0x1F4, 0x200, 0x201, 0x202, 0x206, 0x22C, 0x230, 0x234, 0x236, 0x238, 0x258, 0x260];
    private static readonly int[] ElfFields =
    [
        4, 5, 18, 32, 54, 56,
        .. new[] { 0, 8, 16, 24, 32, 40, 48 }.Select(f => SyntheticElf.LoadHeader + f),
        .. new[] { 0, 8, 16, 24, 32, 40, 48 }.Select(f => SyntheticElf.NoteHeader + f),
        SyntheticElf.NoteBody, SyntheticElf.NoteBody + 4, SyntheticElf.NoteBody + 8, SyntheticElf.NoteBody + 12, SyntheticElf.NoteBody + 16,
    ];

    private static Gen<Edit> EditOf(int length, int[] fields) => Gen.Frequency(
        (6, Gen.Select(Gen.OneOf(Gen.OneOf(fields), Gen.Int[0, length - 1]), Gen.OneOf(1, 2, 4, 8), Gen.Int[0, Extremes.Length - 1],
            (position, width, value) => new Edit(position, width, Extremes[value], false))),
        (3, Gen.Select(Gen.Int[0, length - 1], Gen.Byte, (position, value) => new Edit(position, 1, value, false))),
        (1, Gen.Int[0, length].Select(cut => new Edit(cut, 0, 0, true))));

    private static byte[] Apply(byte[] valid, Edit[] edits)
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
        return file;
    }

    // Everything Check(config, memory) does with the bytes, plus the zero page built from a bzImage.
    private static void ParseAndPlace(byte[] file, ulong memory, ulong initrdSize, int commandLineLength)
    {
        var config = new LinuxBootConfig("kernel", initrdSize == 0 ? null : "initrd", new string('x', commandLineLength));
        LinuxLoader.Check(file, "fuzzed", config, memory, initrdSize);
        if (PvhKernel.IsElf(file))
        {
            var kernel = PvhKernel.Parse(file, "fuzzed");
            Assert.All(kernel.Segments, s => Assert.True(s.PhysicalAddress + s.MemorySize <= kernel.End));
        }
        else
        {
            var kernel = BzImage.Parse(file, "fuzzed");
            Assert.Equal((int)(kernel.SysSize * 16), kernel.ProtectedModeKernel.Length);
            ZeroPage.Build(kernel, LinuxBootLayout.KernelLoad, LinuxBootLayout.CommandLine, 0, 0, LinuxLoader.BuildE820([(0, memory)]));
        }
    }

    private static readonly Gen<(ulong Memory, ulong Initrd, int CommandLine)> Placement = Gen.Select(
        Gen.OneOf(1UL << 20, 64UL << 20, 256UL << 20, 3UL << 30, 16UL << 30),
        Gen.OneOf(0UL, 1UL, 4096UL, 100UL << 20, 4UL << 30),
        Gen.OneOf(0, 100, 2047, 2048, 100 << 10));

    [Fact]
    public void Mutated_bzimages_parse_or_are_refused_with_InvalidDataException()
    {
        var valid = SyntheticBzImage.Create(kernelBytes: 2048);
        ParseAndPlace(valid, 256UL << 20, 4096, 100);            // the starting point is accepted
        Gen.Select(EditOf(valid.Length, BzImageFields).Array[1, 6], Placement)
            .Sample(t => BoundedParse.SucceedsOrRefuses(Apply(valid, t.Item1), file => ParseAndPlace(file, t.Item2.Memory, t.Item2.Initrd, t.Item2.CommandLine)),
                iter: Iterations);
    }

    [Fact]
    public void Mutated_elf_vmlinux_files_parse_or_are_refused_with_InvalidDataException()
    {
        var valid = SyntheticElf.Create();
        ParseAndPlace(valid, 256UL << 20, 4096, 100);
        Gen.Select(EditOf(valid.Length, ElfFields).Array[1, 6], Placement)
            .Sample(t => BoundedParse.SucceedsOrRefuses(Apply(valid, t.Item1), file => ParseAndPlace(file, t.Item2.Memory, t.Item2.Initrd, t.Item2.CommandLine)),
                iter: Iterations);
    }

    // Random bytes, some given the ELF magic or the 'HdrS' magic so they reach the deeper checks.
    [Fact]
    public void Random_bytes_parse_or_are_refused_with_InvalidDataException()
    {
        Gen.Select(Gen.Byte.Array[0, 3000], Gen.Int[0, 2], Placement)
            .Sample(t =>
            {
                var (bytes, magic, placement) = t;
                var file = (byte[])bytes.Clone();
                if (magic == 1 && file.Length >= 4) "\u007fELF"u8.CopyTo(file);
                if (magic == 2 && file.Length >= 0x206) BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x202), 0x53726448);
                BoundedParse.SucceedsOrRefuses(file, f => ParseAndPlace(f, placement.Memory, placement.Initrd, placement.CommandLine));
            }, iter: Iterations);
    }

    // Note streams alone: random (namesz, descsz, type) triples with the Xen name, in 4- and 8-aligned segments.
    [Fact]
    public void Random_pvh_note_streams_parse_or_are_refused_with_InvalidDataException()
    {
        var sizes = Gen.OneOf(Gen.UInt[0, 64], Gen.OneOf(0xFFFFFFF4u, 0xFFFFFFFCu, 0xFFFFFFFFu, 0x7FFFFFFFu, 0x80000000u));
        var note = Gen.Select(sizes, sizes, Gen.OneOf(18u, 17u, 0u, uint.MaxValue));
        Gen.Select(note.Array[1, 5], Gen.Int[0, 8], Gen.OneOf(0UL, 4UL, 8UL))
            .Sample(t =>
            {
                var (notes, padding, alignment) = t;
                var body = new List<byte>();
                foreach (var (nameSize, descSize, type) in notes)
                {
                    var header = new byte[12 + 4 + 8];
                    BinaryPrimitives.WriteUInt32LittleEndian(header, nameSize);
                    BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(4), descSize);
                    BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(8), type);
                    "Xen\0"u8.CopyTo(header.AsSpan(12));
                    BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(16), 0x1000080);
                    body.AddRange(header);
                }
                body.AddRange(new byte[padding]);
                var file = SyntheticElf.Create();
                var withNotes = new byte[SyntheticElf.NoteBody + body.Count];
                file.AsSpan(0, SyntheticElf.NoteBody).CopyTo(withNotes);
                body.CopyTo(withNotes, SyntheticElf.NoteBody);
                BinaryPrimitives.WriteUInt64LittleEndian(withNotes.AsSpan(SyntheticElf.NoteHeader + 32), (ulong)body.Count);
                BinaryPrimitives.WriteUInt64LittleEndian(withNotes.AsSpan(SyntheticElf.NoteHeader + 48), alignment);
                BoundedParse.SucceedsOrRefuses(withNotes, f => PvhKernel.Parse(f, "notes"));
            }, iter: Iterations);
    }
}
