using System.CommandLine;
using System.Text.Json;
using Spectre.Console;

namespace Kernels.Cli;

/// <summary>
/// <c>kernels bench</c>: with no arguments, the int8 GEMM at a default size on every usable backend,
/// verified against the int64 reference, printed as a table.
/// </summary>
internal static class BenchCommand
{
    /// <summary>Default cube size per backend: big enough to mean something, small enough to finish (the CPU accelerator simulates threads).</summary>
    internal static int DefaultSize(Backend backend) => backend switch
    {
        Backend.Cuda => 4096,
        Backend.OpenCL => 1024,
        Backend.CpuSimd => 1024,
        _ => 256,
    };

    public static Command Create()
    {
        var op = new Option<string>("--op") { Description = "Operation to benchmark.", DefaultValueFactory = _ => "int8-gemm" };
        op.AcceptOnlyFromAmong("int8-gemm", "attention", "sparse-gemm");
        var backend = new Option<string>("--backend") { Description = "auto (the best usable), all (every usable backend: the default), cuda, opencl, cpu-simd or cpu." };
        var m = new Option<int?>("--m") { Description = "int8-gemm and sparse-gemm: rows of A (tokens) and of the output (default: per backend, 4096 CUDA, 1024 OpenCL and cpu-simd, 256 on the simulating CPU accelerator)." };
        var n = new Option<int?>("--n") { Description = "Rows of B or of the sparse W (output features), columns of the output (default: as --m)." };
        var k = new Option<int?>("--k") { Description = "Reduction length (default: as --m)." };
        var repeat = new Option<int>("--repeat") { Description = "Timed repetitions after one warm-up; the median is reported.", DefaultValueFactory = _ => 5 };
        var kernel = new Option<string>("--kernel") { Description = "auto, reference, tiled, dp4a, tensorcore (CUDA, compute capability 8.0+) or simd.", DefaultValueFactory = _ => "auto" };
        var seed = new Option<int>("--seed") { Description = "Seed of the random inputs.", DefaultValueFactory = _ => 1234 };
        var noPeer = new Option<bool>("--no-peer") { Description = "Skip the peer libraries (cpu-simd: oneDNN where installed and ONNX Runtime for int8-gemm; ONNX Runtime MultiHeadAttention and the oneDNN sgemm rate for attention) that otherwise run in the same process on the same data." };
        var batch = new Option<int>("--batch") { Description = "attention: sequences.", DefaultValueFactory = _ => 1 };
        var heads = new Option<int>("--heads") { Description = "attention: query heads.", DefaultValueFactory = _ => 8 };
        var kvHeads = new Option<int?>("--kv-heads") { Description = "attention: key/value heads (default: as --heads)." };
        var seq = new Option<int?>("--seq") { Description = "attention: query length (default per backend: 4096 CUDA, 1024 OpenCL and cpu-simd, 64 on the CPU accelerator)." };
        var kvSeq = new Option<int?>("--kv-seq") { Description = "attention: key length (default: as --seq)." };
        var headDim = new Option<int>("--head-dim") { Description = "attention: features per head.", DefaultValueFactory = _ => 64 };
        var causal = new Option<bool>("--causal") { Description = "attention: causal mask (bottom-right aligned)." };
        var format = new Option<string>("--format") { Description = "sparse-gemm: csr, bsr or 2:4.", DefaultValueFactory = _ => "csr" };
        var sparsity = new Option<double>("--sparsity") { Description = "sparse-gemm: fraction of weights pruned (2:4 is at least 0.5).", DefaultValueFactory = _ => 0.9 };
        var block = new Option<string>("--block") { Description = "sparse-gemm: BSR block shape ROWSxCOLUMNS.", DefaultValueFactory = _ => "4x4" };
        var dtype = new Option<string>("--dtype") { Description = "sparse-gemm: int8 (against the dense int8 GEMM) or float32 (against oneDNN sgemm on cpu-simd; the time alone elsewhere).", DefaultValueFactory = _ => "int8" };
        dtype.AcceptOnlyFromAmong("int8", "float32");
        var sparseKernel = new Option<string>("--sparse-kernel") { Description = "sparse-gemm, int8 on CUDA/OpenCL/the CPU accelerator, m > 16: auto (tiled), tiled (groups of four non-zeros × four tokens per dp4a, X chunks in shared memory) or general (one thread per output on Xᵀ).", DefaultValueFactory = _ => "auto" };
        sparseKernel.AcceptOnlyFromAmong("auto", "tiled", "general");
        var sweep = new Option<bool>("--sweep") { Description = "sparse-gemm: also measure sparsities 0.5 to 0.99 and report the crossover (where sparse becomes faster than dense)." };
        var json = new Option<bool>("--json") { Description = "One JSON object per result (int8-gemm: op, backend, device, m, n, k, median_ms, tops, verified, max_abs_error, peers: [{name, detail, median_ms, ratio (our speed ÷ its speed), same_op, verified, note}], ...; attention: op, backend, device, batch, heads, kv_heads, seq, kv_seq, head_dim, causal, median_ms, tflops, verified, max_abs_error, peers, ...; sparse-gemm int8: op, backend, device, format, block, m, n, k, requested_sparsity, sparsity, non_zeros, median_ms, dense_median_ms, speedup_vs_dense, verified, sparse_kernel, ...; sparse-gemm float32: op, dtype, backend, device, format, m, n, k, sparsity, median_ms, peer_median_ms, speedup_vs_peer, verified, max_relative_error, sparse_kernel, ...)." };

        var command = new Command("bench", "Benchmark int8 GEMM, sparse GEMM (int8 or float32) or attention on every usable backend (or one), verified against the reference, next to a peer measured in the same run.")
        {
            op, backend, m, n, k, repeat, kernel, seed, noPeer, batch, heads, kvHeads, seq, kvSeq, headDim, causal,
            format, sparsity, block, dtype, sparseKernel, sweep, json,
        };
        command.SetAction(result =>
        {
            foreach ((string name, int? value) in new[] { ("--m", result.GetValue(m)), ("--n", result.GetValue(n)), ("--k", result.GetValue(k)) })
            {
                if (value is < 1)
                    throw new ArgumentException($"{name}: expected ≥ 1, got {value}.", name);
            }
            if (result.GetValue(repeat) < 1)
                throw new ArgumentException($"--repeat: expected ≥ 1, got {result.GetValue(repeat)}.", "--repeat");
            GemmKernel gemmKernel = Enum.TryParse(result.GetValue(kernel), ignoreCase: true, out GemmKernel parsed)
                ? parsed
                : throw new ArgumentException($"--kernel: expected auto, reference, tiled, dp4a, tensorcore or simd; got '{result.GetValue(kernel)}'.", "--kernel");
            var settings = new Settings(
                Backends(result.GetValue(backend)), result.GetValue(m), result.GetValue(n), result.GetValue(k),
                result.GetValue(repeat), gemmKernel, result.GetValue(seed), result.GetValue(json), !result.GetValue(noPeer));
            if (result.GetValue(op) == "sparse-gemm")
            {
                SparseFormat sparseFormat = SparseBenchmark.ParseFormat(result.GetValue(format) ?? "csr");
                (int, int) blockShape = SparseBenchmark.ParseBlock(result.GetValue(block) ?? "4x4");
                double s = result.GetValue(sparsity);
                if (!(s >= 0 && s <= 1))
                    throw new ArgumentException($"--sparsity: expected a fraction in [0, 1], got {s}.", "--sparsity");
                if (result.GetValue(dtype) == "float32")
                {
                    if (result.GetValue(sweep))
                        throw new ArgumentException("--sweep: the crossover is measured for int8 only (against the dense int8 GEMM); drop --sweep or --dtype float32.", "--sweep");
                    return RunSparseFloat(settings, sparseFormat, blockShape, s);
                }
                SparseInt8Kernel ilgpuKernel = Enum.Parse<SparseInt8Kernel>(result.GetValue(sparseKernel) ?? "auto", ignoreCase: true);
                return RunSparse(settings, sparseFormat, blockShape, s, result.GetValue(sweep), ilgpuKernel);
            }
            if (result.GetValue(op) == "attention")
            {
                var attention = new AttentionSettings(
                    result.GetValue(batch), result.GetValue(heads), result.GetValue(kvHeads), result.GetValue(seq),
                    result.GetValue(kvSeq), result.GetValue(headDim), result.GetValue(causal));
                return RunAttention(settings, attention);
            }
            return Run(settings);
        });
        return command;
    }

    private sealed record Settings(List<Backend> Backends, int? M, int? N, int? K, int Repeat, GemmKernel Kernel, int Seed, bool Json, bool Peer);

    private sealed record AttentionSettings(int Batch, int Heads, int? KvHeads, int? Seq, int? KvSeq, int HeadDim, bool Causal);

    /// <summary>Default attention sequence length per backend (the CPU accelerator simulates threads: keep it small).</summary>
    internal static int DefaultSeq(Backend backend) => backend switch
    {
        Backend.Cuda => 4096,
        Backend.OpenCL or Backend.CpuSimd => 1024,
        _ => 64,
    };

    private static int RunAttention(Settings s, AttentionSettings a)
    {
        // Every backend's shape checked before any work.
        foreach (Backend backend in s.Backends)
        {
            int seq = a.Seq ?? DefaultSeq(backend);
            var shape = new AttentionShape(a.Batch, a.Heads, a.KvHeads ?? a.Heads, seq, a.KvSeq ?? seq, a.HeadDim, a.Causal);
            Check.Attention(shape, AttentionOptions.Default, shape.QueryElements, shape.KeyElements, shape.KeyElements, default, decode: false);
            BenchSizes.Check(shape);
        }
        var results = new List<AttentionBenchResult>();
        foreach (Backend backend in s.Backends)
        {
            using KernelSession session = KernelSession.Create(backend);
            int seq = a.Seq ?? DefaultSeq(session.Backend);
            var shape = new AttentionShape(a.Batch, a.Heads, a.KvHeads ?? a.Heads, seq, a.KvSeq ?? seq, a.HeadDim, a.Causal);
            // Validates the shape with the library's own messages before any data is made.
            Check.Attention(shape, AttentionOptions.Default, shape.QueryElements, shape.KeyElements, shape.KeyElements, default, decode: false);
            AttentionBenchResult r = CliProgress.Step($"attention on {backend.ToName()}", () => AttentionBenchmark.Run(session, shape, s.Repeat, s.Seed, s.Peer));
            results.Add(r);
            if (s.Json)
                Console.WriteLine(JsonSerializer.Serialize(r, Program.Json));
        }
        if (!s.Json)
        {
            var table = new Table().AddColumns("op", "backend", "device", "B×H/KvH×Sq×Sk×D", "causal", "median ms", "TFLOPS", "peer (same run)", "verified");
            foreach (AttentionBenchResult r in results)
            {
                table.AddRow(r.Op, r.Backend, Markup.Escape(r.Device),
                    $"{r.Batch}×{r.Heads}/{r.KvHeads}×{r.Seq}×{r.KvSeq}×{r.HeadDim}", r.Causal ? "yes" : "no",
                    r.MedianMs.ToString("F3"), r.Tflops.ToString("F4"),
                    Markup.Escape(AttentionPeerText(r)),
                    r.Verified ? $"[green]yes[/] ({r.Verification}, max error {r.MaxAbsError:G2})" : $"[red]NO[/] (max error {r.MaxAbsError})");
            }
            AnsiConsole.Write(table);
        }
        var failures = results.Where(r => !r.Verified).ToList();
        foreach (AttentionBenchResult f in failures)
            Console.Error.WriteLine($"error: attention result not verified on {f.Backend}: max error {f.MaxAbsError}");
        return failures.Count == 0 ? 0 : 1;
    }

    private static int RunSparseFloat(Settings s, SparseFormat format, (int Rows, int Columns) block, double sparsity)
    {
        CheckSizes(s, SparseBenchmark.DefaultSize);
        var results = new List<SparseFloatBenchResult>();
        foreach (Backend backend in s.Backends)
        {
            using KernelSession session = KernelSession.Create(backend);
            int size = SparseBenchmark.DefaultSize(session.Backend);
            int m = s.M ?? size, n = s.N ?? s.M ?? size, k = s.K ?? s.M ?? size;
            SparseFloatBenchResult r = CliProgress.Step($"sparse-gemm float32 on {backend.ToName()}", () => SparseFloatBenchmark.Run(session, m, n, k, format, block, sparsity, s.Repeat, s.Seed, s.Peer));
            results.Add(r);
            if (s.Json)
                Console.WriteLine(JsonSerializer.Serialize(r, Program.Json));
        }
        if (!s.Json)
        {
            var table = new Table().AddColumns("op", "dtype", "backend", "device", "format", "shape (m×n×k)", "sparsity", "median ms", "peer ms (same run)", "speed-up vs peer", "verified", "sparse kernel");
            foreach (SparseFloatBenchResult r in results)
            {
                table.AddRow(r.Op, r.Dtype, r.Backend, Markup.Escape(r.Device), r.Format + (r.Block == "-" ? "" : $" {r.Block}"),
                    $"{r.M}×{r.N}×{r.K}", $"{r.Sparsity:P1}", r.MedianMs.ToString("F3"),
                    r.PeerMedianMs is { } p ? $"{p:F3} ({r.Peer})" : "- (no dense float32 peer here)",
                    r.SpeedupVsPeer is { } x ? $"{x:F2}×" : "-",
                    r.Verified ? "[green]yes[/]" : $"[red]NO[/] ({r.MaxRelativeError:G3})", Markup.Escape(r.SparseKernel));
            }
            AnsiConsole.Write(table);
        }
        var failures = results.Where(r => !r.Verified).ToList();
        foreach (SparseFloatBenchResult f in failures)
            Console.Error.WriteLine($"error: float32 sparse result not verified on {f.Backend}: worst error {f.MaxRelativeError:G3} of Σ|x·w|");
        return failures.Count == 0 ? 0 : 1;
    }

    private static int RunSparse(Settings s, SparseFormat format, (int Rows, int Columns) block, double sparsity, bool sweep, SparseInt8Kernel ilgpuKernel)
    {
        CheckSizes(s, SparseBenchmark.DefaultSize);
        var results = new List<SparseBenchResult>();
        foreach (Backend backend in s.Backends)
        {
            using KernelSession session = KernelSession.Create(backend);
            session.SparseInt8Kernel = ilgpuKernel;
            int size = SparseBenchmark.DefaultSize(session.Backend);
            int m = s.M ?? size, n = s.N ?? s.M ?? size, k = s.K ?? s.M ?? size;
            List<SparseBenchResult> measured = CliProgress.Step($"sparse-gemm int8 on {backend.ToName()}", () => SparseBenchmark.Run(session, m, n, k, format, block, sparsity, sweep, s.Repeat, s.Seed));
            results.AddRange(measured);
            if (s.Json)
            {
                foreach (SparseBenchResult r in measured)
                    Console.WriteLine(JsonSerializer.Serialize(r, Program.Json));
            }
        }
        if (!s.Json)
        {
            var table = new Table().AddColumns("op", "backend", "device", "format", "shape (m×n×k)", "sparsity", "median ms", "dense int8 ms (same run)", "speed-up vs dense", "verified", "sparse kernel");
            foreach (SparseBenchResult r in results)
            {
                table.AddRow(r.Op, r.Backend, Markup.Escape(r.Device), r.Format + (r.Block == "-" ? "" : $" {r.Block}"),
                    $"{r.M}×{r.N}×{r.K}", $"{r.Sparsity:P1}", r.MedianMs.ToString("F3"), r.DenseMedianMs.ToString("F3"),
                    $"{r.SpeedupVsDense:F2}×", r.Verified ? "[green]yes[/]" : "[red]NO[/]", Markup.Escape(r.SparseKernel ?? "-"));
            }
            AnsiConsole.Write(table);
            foreach (var group in results.GroupBy(r => r.Backend).Where(g => g.Count() > 1))
            {
                double? crossover = group.First().CrossoverSparsity;
                var kernelPoints = group.Where(r => !r.DenseFallback).ToList();
                string fallback = kernelPoints.Count < group.Count()
                    ? $" Below {kernelPoints.Select(r => r.Sparsity).DefaultIfEmpty(1).Min():P0} the cost model ran the dense GEMM instead (those rows time it twice and do not count)."
                    : "";
                AnsiConsole.MarkupLine(Markup.Escape(crossover is { } c
                    ? kernelPoints.Count > 0 && c <= kernelPoints.Min(r => r.Sparsity)
                        ? $"{group.Key}: the sparse kernel is faster than dense from the lowest sparsity where it ran, {c:P0}.{fallback}"
                        : $"{group.Key}: sparse becomes faster than dense at about {c:P0} sparsity (interpolated).{fallback}"
                    : $"{group.Key}: sparse was not faster than dense at any measured sparsity where a sparse kernel ran.{fallback}"));
            }
        }
        var failures = results.Where(r => !r.Verified).ToList();
        foreach (SparseBenchResult f in failures)
            Console.Error.WriteLine($"error: sparse result not verified on {f.Backend} at sparsity {f.Sparsity:F3}");
        return failures.Count == 0 ? 0 : 1;
    }

    private static List<Backend> Backends(string? value)
    {
        if (string.IsNullOrWhiteSpace(value) || value.Equals("all", StringComparison.OrdinalIgnoreCase))
        {
            return DeviceCatalog.List().Where(d => d.Usable).Select(d => d.Backend).Distinct().ToList();
        }
        return [BackendNames.Parse(value, "--backend")];
    }

    /// <summary>Every backend's m, n, k (given, or its default) checked before any work.</summary>
    private static void CheckSizes(Settings s, Func<Backend, int> defaultSize)
    {
        foreach (Backend backend in s.Backends)
        {
            int size = defaultSize(backend);
            BenchSizes.Check(s.M ?? size, s.N ?? s.M ?? size, s.K ?? s.M ?? size);
        }
    }

    private static int Run(Settings s)
    {
        CheckSizes(s, DefaultSize);
        var results = new List<BenchResult>();
        var failures = new List<string>();

        foreach (Backend backend in s.Backends)
        {
            BenchResult r = CliProgress.Bar($"int8-gemm on {backend.ToName()}", s.Repeat + 1, progress =>
            {
                using KernelSession session = KernelSession.Create(backend);
                int size = DefaultSize(session.Backend);
                int m = s.M ?? size, n = s.N ?? s.M ?? size, k = s.K ?? s.M ?? size;
                return GemmBenchmark.Run(session, m, n, k, s.Repeat, s.Kernel, s.Seed, s.Peer, i => progress(i + 1));
            });
            results.Add(r);
            if (s.Json)
                Console.WriteLine(JsonSerializer.Serialize(r, Program.Json));
        }
        if (!s.Json)
        {
            PrintTable(results);
        }

        failures.AddRange(results.Where(r => !r.Verified).Select(r => $"{r.Backend}: max error {r.MaxAbsError}"));
        foreach (string f in failures)
            Console.Error.WriteLine($"error: result not verified on {f}");
        return failures.Count == 0 ? 0 : 1;
    }

    private static void PrintTable(List<BenchResult> results)
    {
        var table = new Table().AddColumns("op", "backend", "device", "kernel", "shape (m×n×k)", "median ms", "TOPS", "peer (same run)", "verified");
        foreach (BenchResult r in results)
        {
            table.AddRow(
                r.Op, r.Backend, Markup.Escape(r.Device), r.Kernel, $"{r.M}×{r.N}×{r.K}",
                r.MedianMs.ToString("F3"), r.Tops.ToString(r.Tops < 0.1 ? "F5" : "F2"),
                Markup.Escape(PeerText(r)),
                r.Verified ? $"[green]yes[/] ({r.Verification})" : $"[red]NO[/] (max error {r.MaxAbsError})");
        }
        AnsiConsole.Write(table);
    }

    /// <summary>Every peer of an attention result: its median (or rate) and our speed relative to it, or why it did not run.</summary>
    private static string AttentionPeerText(AttentionBenchResult r)
    {
        if (r.Peers is not { Count: > 0 } peers)
            return r.PeerTflops is { } pt ? $"{r.Peer}: {pt:F4} TFLOPS; ours {r.RatioToPeer:F2}× its rate" : r.Peer ?? "-";
        return string.Join("\n", peers.Select(p => p.MedianMs is not { } pm
            ? p.Note ?? p.Detail
            : p.SameOp
                ? $"{p.Detail}: {pm:F3} ms; ours {p.Ratio:F2}× its speed" + (p.Verified == false ? $" (NOT VERIFIED: {p.Note})" : "")
                : $"{p.Detail}: {pm:F3} ms; ours {p.Ratio:F2}× its rate"));
    }

    /// <summary>Every peer of an int8-gemm result: its median and our speed relative to it, or why it did not run.</summary>
    private static string PeerText(BenchResult r)
    {
        if (r.Peers is not { Count: > 0 } peers)
            return r.Peer ?? "-";
        var lines = new List<string>();
        foreach (PeerResult p in peers)
        {
            if (p.MedianMs is not { } pm)
            {
                lines.Add(p.Note ?? p.Detail);
                continue;
            }
            string line = $"{p.Detail}: {pm:F3} ms; ours {p.Ratio:F2}× its speed" + (p.Verified == false ? " (OUTPUT DIFFERS)" : "");
            if (p.Name == "onednn" && r.MedianMsPackingEachCall is { } packing)
                line += $"; ours packing the weights each call as it does {packing:F3} ms, {pm / packing:F2}×";
            lines.Add(line);
        }
        return string.Join("\n", lines);
    }
}
