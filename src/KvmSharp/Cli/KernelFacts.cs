using KvmSharp.Vmm.Boot.Linux;

namespace KvmSharp.Cli;

/// <summary>
/// What validation needs to know about a kernel before any VM exists: where its image ends once
/// loaded (and decompressed), how long a command line it takes, and how high its initrd may go.
/// The kernel is checked by the loader's own parsers; what they refuse becomes an invalid --kernel.
/// </summary>
public sealed record KernelFacts(ulong NeedsMemoryUpTo, int? CommandLineLimit, ulong InitrdCeiling)
{
    /// <summary>Read and check a kernel the caller has already found to be a regular file no larger than guest RAM.</summary>
    public static KernelFacts Read(string path)
    {
        try
        {
            LinuxLoader.Check(path);
            byte[] file = File.ReadAllBytes(path);
            string name = Path.GetFileName(path);
            if (PvhKernel.IsElf(file))
            {
                var elf = PvhKernel.Parse(file, name);
                return new KernelFacts(elf.End, null, ulong.MaxValue);
            }
            var bzImage = BzImage.Parse(file, name);
            ulong start = Math.Max(LinuxBootLayout.KernelLoad, bzImage.PreferredAddress);
            // The decompressor works between the load address and max(load, preferred) + init_size.
            ulong end = start > ulong.MaxValue - bzImage.InitSize ? ulong.MaxValue : start + bzImage.InitSize;
            int? limit = bzImage.CommandLineSize > int.MaxValue ? int.MaxValue : (int)bzImage.CommandLineSize;
            return new KernelFacts(end, limit, (ulong)bzImage.InitrdAddressMax + 1);
        }
        catch (InvalidDataException e)
        {
            throw new OptionsException(RunSetting.Kernel, path, e.Message);
        }
        catch (Exception e) when (e is ArgumentException or IndexOutOfRangeException or OverflowException or InvalidOperationException)
        {
            // A header whose fields point outside the file; the parsers should say so themselves.
            throw new OptionsException(RunSetting.Kernel, path, "is not a kernel KvmSharp can boot: its headers point outside the file");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OptionsException(RunSetting.Kernel, path, $"the file cannot be read: {e.Message}");
        }
    }
}
