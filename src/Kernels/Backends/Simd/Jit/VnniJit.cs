using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Iced.Intel;

namespace Kernels.Backends.Simd.Jit;

/// <summary>
/// The process-wide set of generated AVX-512 VNNI micro-kernels (<see cref="VnniKernelGenerator"/>): one per
/// output (<see cref="VnniOutput"/>) and (rows 1..6, panels 1..4) tile shape, assembled together on first use into one W^X code mapping
/// (<see cref="ExecutablePages"/>) and kept for the life of the process.
/// </summary>
internal static unsafe class VnniJit
{
    private const int Alignment = 64;
    private static readonly Lock Sync = new();
    private static KernelSet? _set;
    private static string? _failure;

    /// <summary>
    /// Whether the processor, the runtime and the operating system can run the generated kernels:
    /// Linux x64, AVX-512F, AVX-512BW and AVX-512VL enabled in the .NET runtime, and AVX512_VNNI
    /// (CPUID leaf 7, ECX bit 11).
    /// </summary>
    public static bool CanRun { get; } = HasFeatures() && OperatingSystem.IsLinux() &&
        RuntimeInformation.ProcessArchitecture == Architecture.X64;

    /// <summary>Why <see cref="CanRun"/> is false (null when it is true).</summary>
    public static string? WhyNot =>
        CanRun ? null
        : !OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64
            ? $"generated code runs on Linux x64 only; this is {RuntimeInformation.OSDescription} {RuntimeInformation.ProcessArchitecture}"
            : $"the processor or runtime lacks a feature the kernels use (AVX-512F {Avx512F.IsSupported}, AVX-512BW {Avx512BW.IsSupported}, AVX-512VL {Avx512F.VL.IsSupported}, AVX512_VNNI {CpuIdVnni()})";

    /// <summary>
    /// The generated kernels, assembled on the first call; null (with <paramref name="failure"/> saying
    /// why) when they cannot run here or generation failed, in which case callers use the intrinsics.
    /// </summary>
    public static KernelSet? TryGet(out string? failure)
    {
        KernelSet? set = Volatile.Read(ref _set);
        if (set != null)
        {
            failure = null;
            return set;
        }
        lock (Sync)
        {
            if (_set == null && _failure == null)
            {
                if (!CanRun)
                {
                    _failure = WhyNot;
                }
                else
                {
                    try
                    {
                        Volatile.Write(ref _set, KernelSet.Build());
                    }
                    catch (Exception ex) when (ex is InvalidOperationException or PlatformNotSupportedException or DllNotFoundException or EntryPointNotFoundException)
                    {
                        _failure = $"generating the kernels failed: {ex.Message}";
                    }
                }
            }
            failure = _failure;
            return _set;
        }
    }

    private static bool HasFeatures() =>
        Avx512F.IsSupported && Avx512BW.IsSupported && Avx512F.VL.IsSupported && CpuIdVnni();

    /// <summary>CPUID leaf 7 sub-leaf 0, ECX bit 11: AVX512_VNNI.</summary>
    private static bool CpuIdVnni() =>
        X86Base.IsSupported && X86Base.CpuId(0, 0).Eax >= 7 && (X86Base.CpuId(7, 0).Ecx & (1 << 11)) != 0;

    /// <summary>The assembled kernels: entry points into one read-execute mapping.</summary>
    internal sealed class KernelSet
    {
        private static readonly SparseRowKernel[] SparseKernels = Enum.GetValues<SparseRowKernel>();
        private static readonly int DenseCount = Enum.GetValues<VnniOutput>().Length * VnniKernelGenerator.MaxRows * VnniKernelGenerator.MaxPanels;

        private readonly nint[] _entries;
        private readonly int[] _offsets;
        private readonly int[] _lengths;
        private readonly string[] _names;
        private readonly int[] _dataBytes;
        private readonly byte[] _code;

        private KernelSet(ExecutablePages pages, byte[] code, int[] offsets, int[] lengths, string[] names, int[] dataBytes)
        {
            Pages = pages;
            _code = code;
            _offsets = offsets;
            _lengths = lengths;
            _names = names;
            _dataBytes = dataBytes;
            _entries = new nint[offsets.Length];
            for (int i = 0; i < offsets.Length; i++)
                _entries[i] = (nint)(pages.Address + offsets[i]);
        }

        /// <summary>The number of kernels (one per GEMM output and tile shape, and the sparse row kernels).</summary>
        public int Count => _entries.Length;

        /// <summary>The code mapping (read-execute).</summary>
        public ExecutablePages Pages { get; }

        /// <summary>
        /// The kernel writing <paramref name="output"/> for a tile of <paramref name="rows"/> (1..6) rows ×
        /// <paramref name="panels"/> (1..4) B panels: <c>kernel(a, b, groups, panelBytes, tileOutput)</c> as
        /// <see cref="VnniKernelGenerator"/> describes.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public delegate* unmanaged<byte*, byte*, long, long, TileOutput*, void> Get(VnniOutput output, int rows, int panels) =>
            (delegate* unmanaged<byte*, byte*, long, long, TileOutput*, void>)_entries[Index(output, rows, panels)];

        /// <summary>
        /// The sparse row kernel <paramref name="kernel"/>: <c>kernel(panel, index, weights, count, dst)</c> as
        /// <see cref="SparseKernelGenerator"/> describes.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public delegate* unmanaged<byte*, void*, void*, long, int*, void> Sparse(SparseRowKernel kernel) =>
            (delegate* unmanaged<byte*, void*, void*, long, int*, void>)_entries[DenseCount + (int)kernel];

        /// <summary>Every kernel's disassembly (Intel syntax, at its run-time address), one block per kernel.</summary>
        public string Disassemble()
        {
            var text = new StringBuilder();
            var formatter = new IntelFormatter();
            formatter.Options.FirstOperandCharIndex = 10;
            formatter.Options.UppercaseHex = false;
            var output = new StringOutput();
            for (int i = 0; i < _entries.Length; i++)
            {
                ulong ip = (ulong)_entries[i];
                text.Append(CultureInfo.InvariantCulture, $"; avx512-vnni {_names[i]}, {_lengths[i]} bytes at 0x{ip:x}\n");
                int codeBytes = _lengths[i] - _dataBytes[i];
                var decoder = Iced.Intel.Decoder.Create(64, new ByteArrayCodeReader(_code, _offsets[i], codeBytes), ip);
                ulong end = ip + (ulong)codeBytes;
                while (decoder.IP < end)
                {
                    decoder.Decode(out Instruction instruction);
                    formatter.Format(instruction, output);
                    int at = _offsets[i] + (int)(instruction.IP - ip);
                    string bytes = Convert.ToHexString(_code, at, instruction.Length).ToLowerInvariant();
                    text.Append(CultureInfo.InvariantCulture, $"{instruction.IP:x16} {bytes,-28} {output.ToStringAndReset()}\n");
                }
                for (int at = codeBytes; at < _lengths[i]; at += 16)
                {
                    string bytes = Convert.ToHexString(_code, _offsets[i] + at, Math.Min(16, _lengths[i] - at)).ToLowerInvariant();
                    text.Append(CultureInfo.InvariantCulture, $"{ip + (ulong)at:x16} data {bytes}\n");
                }
                text.Append('\n');
            }
            return text.ToString();
        }

        private static int Index(VnniOutput output, int rows, int panels) =>
            ((int)output * VnniKernelGenerator.MaxRows + rows - 1) * VnniKernelGenerator.MaxPanels + panels - 1;

        private static string Describe(VnniOutput output) => output switch
        {
            VnniOutput.Int32 => "int32 output",
            VnniOutput.Dequant => "dequantized float32 output",
            _ => "dequantized float32 output + bias",
        };

        private static string Describe(SparseRowKernel kernel) => kernel switch
        {
            SparseRowKernel.Interleave32 => "sparse int8 row kernel, interleave of four non-zeros, 32-bit columns, 64 tokens",
            SparseRowKernel.Interleave16 => "sparse int8 row kernel, interleave of four non-zeros, 16-bit columns, 64 tokens",
            SparseRowKernel.Quads => "sparse int8 row kernel, aligned quads, 64 tokens",
            SparseRowKernel.Small8 => "sparse int8 small-m row kernel, 8-token panel (vpermb), 32-bit columns",
            _ => "sparse int8 small-m row kernel, 16-token panel (vpermb), 32-bit columns",
        };

        /// <summary>
        /// Assembles every GEMM output and tile shape and every sparse row kernel, lays them out <see cref="Alignment"/>
        /// bytes apart (int3 between) and maps them W^X.
        /// </summary>
        internal static KernelSet Build()
        {
            int count = DenseCount + SparseKernels.Length;
            var pieces = new byte[count][];
            var names = new string[count];
            var dataBytes = new int[count];
            foreach (VnniOutput output in Enum.GetValues<VnniOutput>())
            {
                for (int rows = 1; rows <= VnniKernelGenerator.MaxRows; rows++)
                {
                    for (int panels = 1; panels <= VnniKernelGenerator.MaxPanels; panels++)
                    {
                        int i = Index(output, rows, panels);
                        pieces[i] = VnniKernelGenerator.Emit(rows, panels, output);
                        names[i] = $"micro-kernel {rows}x{panels * Int8GemmSimd.NR} ({rows} rows x {panels} zmm of int32), {Describe(output)}";
                    }
                }
            }
            foreach (SparseRowKernel kernel in SparseKernels)
            {
                pieces[DenseCount + (int)kernel] = SparseKernelGenerator.Emit(kernel, out dataBytes[DenseCount + (int)kernel]);
                names[DenseCount + (int)kernel] = Describe(kernel);
            }
            var offsets = new int[count];
            var lengths = new int[count];
            int size = 0;
            for (int i = 0; i < count; i++)
            {
                offsets[i] = size;
                lengths[i] = pieces[i].Length;
                size = (size + pieces[i].Length + Alignment - 1) / Alignment * Alignment;
            }
            var code = new byte[size];
            Array.Fill(code, (byte)0xCC);
            for (int i = 0; i < count; i++)
                pieces[i].CopyTo(code, offsets[i]);
            return new KernelSet(ExecutablePages.Create(code), code, offsets, lengths, names, dataBytes);
        }
    }
}
