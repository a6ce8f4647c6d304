using System.CommandLine;
using Kernels.Backends.Simd.Jit;
using Kernels.Simd;

namespace Kernels.Cli;

/// <summary>
/// <c>kernels jit [--dump]</c>: whether cpu-simd runs generated AVX-512 VNNI kernels here (the int8 GEMM micro-kernels
/// and the sparse int8 row kernels; and if not,
/// why), and with <c>--dump</c> the disassembly of every generated kernel (Iced, Intel syntax).
/// </summary>
internal static class JitCommand
{
    public static Command Create()
    {
        var dump = new Option<bool>("--dump") { Description = "Print the disassembly of every generated kernel (exit 2 where generated code is off or cannot run)." };
        var command = new Command("jit", "Show whether the generated AVX-512 VNNI kernels (int8 GEMM and sparse int8) run on this machine; --dump disassembles them.") { dump };
        command.SetAction(result =>
        {
            SimdLevel effective = CpuSimd.Effective;
            Console.WriteLine($"detected: {CpuSimd.Detected.ToName()}");
            Console.WriteLine($"effective: {effective.ToName()}");
            string? why = effective < SimdLevel.Avx512Vnni
                ? VnniJit.WhyNot ?? $"switched off ({CpuSimd.MaxLevelVariable}, {CpuSimd.JitVariable}=0 or CpuSimd.GeneratedCode)"
                : null;
            VnniJit.KernelSet? set = null;
            if (why == null)
            {
                set = VnniJit.TryGet(out string? failure);
                why = failure;
            }
            if (set == null)
            {
                Console.WriteLine($"generated code: off, the int8 GEMM and sparse kernels run the {Min(effective, SimdLevel.AvxVnni).ToName()} intrinsics: {why}");
                if (result.GetValue(dump))
                    throw new ArgumentException($"--dump: generated code is off here ({why}).");
                return 0;
            }
            unsafe
            {
                Console.WriteLine($"generated code: on, {set.Count} kernels in {set.Pages.Length} bytes of read-execute pages at 0x{(ulong)set.Pages.Address:x}");
            }
            if (result.GetValue(dump))
            {
                Console.WriteLine();
                Console.Write(set.Disassemble());
            }
            return 0;
        });
        return command;
    }

    private static SimdLevel Min(SimdLevel a, SimdLevel b) => a <= b ? a : b;
}
