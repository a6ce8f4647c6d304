#!/usr/bin/env bash
# Proves the NuGet packages work for a consumer: packs Kernels, Kernels.Device and Kernels.Cli into a
# temporary feed, builds and runs a fresh console app OUTSIDE the repository that references only
# `Kernels` (int8 GEMM, sparse product and attention on cpu-simd, each checked against a plain loop),
# then installs the `kernels` tool from the feed into a temporary tool path and runs `kernels devices`.
# Exits 0 when all of that worked, 1 otherwise; the last line is the one-line summary:
#   consumer-test: PASSED (Kernels 0.4.0: pack, consumer app, tool `kernels devices`) in 123 s
#   consumer-test: FAILED at <step> ...
# Idempotent: everything lives in a fresh temporary folder (removed on exit, KEEP=1 keeps it), with its own
# NuGet packages folder (the machine's cache is only read, as a fallback folder), so a rebuilt package
# with an unchanged version is never shadowed by an old copy and nothing is left in ~/.nuget.
# Usage: bash .ci/consumer-test.sh          (from anywhere; Release configuration)
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
start=$SECONDS
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

work=$(mktemp -d "${TMPDIR:-/tmp}/kernels-consumer.XXXXXX")
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "kept: $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

step=""
fail() {
  echo "consumer-test: FAILED at ${step}${1:+: $1} after $(( SECONDS - start )) s"
  exit 1
}
run() { # run a step quietly; on failure show its log
  step=$1; shift
  echo "== $step"
  if ! "$@" >"$work/log.txt" 2>&1; then
    tail -n 40 "$work/log.txt"
    fail
  fi
}

feed="$work/feed" app="$work/app" tools="$work/tools"
mkdir -p "$feed" "$app" "$tools"

# The packages' version, from the one place it is set (Directory.Build.props).
step="version"
version=$(cd "$repo" && dotnet msbuild src/Kernels/Kernels.csproj -getProperty:PackageVersion 2>/dev/null | tr -d '[:space:]')
[ -n "$version" ] || fail "could not read PackageVersion"
echo "Kernels $version"

for project in kernels/Kernels.Device src/Kernels src/Kernels.Cli; do
  run "pack $project" dotnet pack "$repo/$project" -c Release -o "$feed"
done
for id in Kernels.Device Kernels Kernels.Cli; do
  [ -f "$feed/$id.$version.nupkg" ] && [ -f "$feed/$id.$version.snupkg" ] || fail "missing $id.$version.nupkg or .snupkg"
done
step="package contents"
# What a consumer needs inside: the assemblies with their XML docs, the README, the licence; the tool's entry point.
for entry in Kernels.Device:lib/net10.0/Kernels.Device.xml Kernels:lib/net10.0/Kernels.dll Kernels:lib/net10.0/Kernels.xml \
             Kernels:README.md Kernels:LICENSE Kernels.Cli:tools/net10.0/any/DotnetToolSettings.xml; do
  id=${entry%%:*} path=${entry#*:}
  unzip -l "$feed/$id.$version.nupkg" "$path" >/dev/null 2>&1 || fail "$id.$version.nupkg has no $path"
done
ls -l "$feed" | awk 'NR > 1 { printf "  %-32s %12d bytes\n", $9, $5 }'

# NuGet configuration of the consumer: the local feed plus this machine's sources (here a registry mirror
# behind the nuget.org name), with a private packages folder and the machine's cache as a read-only fallback.
step="nuget.config"
sources=$(cd "$work" && dotnet nuget list source --format short 2>/dev/null | awk '$1 ~ /^E/ { print $2 }')
[ -n "$sources" ] || sources="https://api.nuget.org/v3/index.json"
{
  echo '<?xml version="1.0" encoding="utf-8"?>'
  echo '<configuration>'
  echo '  <config><add key="globalPackagesFolder" value="'"$work/packages"'" /></config>'
  echo '  <fallbackPackageFolders><add key="machine" value="'"${NUGET_PACKAGES:-$HOME/.nuget/packages}"'" /></fallbackPackageFolders>'
  echo '  <packageSources>'
  echo '    <clear />'
  echo '    <add key="kernels-local" value="'"$feed"'" />'
  i=0
  for s in $sources; do i=$(( i + 1 )); echo '    <add key="source'"$i"'" value="'"$s"'" />'; done
  echo '  </packageSources>'
  echo '</configuration>'
} > "$work/nuget.config"
unset NUGET_PACKAGES
# A fallback folder only serves packages already there: make sure ours are not (a stale 0.4.0 from a manual
# install would shadow the feed).
for id in kernels kernels.device kernels.cli; do
  [ -d "$HOME/.nuget/packages/$id/$version" ] && fail "$HOME/.nuget/packages/$id/$version exists: remove it, it would shadow the feed"
done

run "dotnet new console" dotnet new console -o "$app" -n KernelsConsumer --framework net10.0
run "dotnet add package Kernels" dotnet add "$app/KernelsConsumer.csproj" package Kernels --version "$version" --source "$feed"

cat > "$app/Program.cs" <<'EOF'
// A consumer of the Kernels package: every result checked against a plain loop; exit 1 on a mismatch.
using Kernels;

int failures = 0;
void Check(string what, bool ok, string detail)
{
    Console.WriteLine($"{(ok ? "OK" : "MISMATCH")} {what}: {detail}");
    if (!ok) failures++;
}

var rng = new Random(42);
using var session = KernelSession.Create(Backend.CpuSimd);
Console.WriteLine($"session: {session.Backend} on {session.DeviceName}");

// int8 GEMM: C[i,j] = Σk A[i,k]·B[j,k], exact, against an int64 loop; and the fused dequantizing epilogue.
{
    const int m = 37, n = 53, k = 300;
    var a = new sbyte[m * k]; var b = new sbyte[n * k];
    for (int i = 0; i < a.Length; i++) a[i] = (sbyte)rng.Next(-128, 128);
    for (int i = 0; i < b.Length; i++) b[i] = (sbyte)rng.Next(-128, 128);
    int[] c = session.Int8Gemm(a, b, m, n, k);
    int bad = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
        {
            long s = 0;
            for (int p = 0; p < k; p++) s += (long)a[i * k + p] * b[j * k + p];
            if (c[i * n + j] != s) bad++;
        }
    Check("int8 GEMM", bad == 0, $"{m}x{n}x{k}, {bad} of {m * n} outputs differ from the int64 loop");

    var aScale = new float[m]; var bScale = new float[n];
    Array.Fill(aScale, 0.01f); Array.Fill(bScale, 0.02f);
    float[] y = session.Int8GemmDequant(a, b, aScale, bScale, [], m, n, k);
    double maxErr = 0;
    for (int i = 0; i < y.Length; i++) maxErr = Math.Max(maxErr, Math.Abs(y[i] - c[i] * 0.01 * 0.02) / (1 + Math.Abs(c[i] * 0.01 * 0.02)));
    Check("int8 GEMM dequant", maxErr < 1e-5, $"max relative error {maxErr:E2}");
}

// Sparse: prune float weights to 90 %, quantize per channel, CSR, Y[i,j] = Σk X[i,k]·W[j,k] against an int64 loop.
{
    const int tokens = 24, outFeatures = 96, features = 128;
    var w = new float[outFeatures * features];
    for (int i = 0; i < w.Length; i++) w[i] = (float)(rng.NextDouble() * 2 - 1);
    float[] pruned = Pruning.Magnitude(w, outFeatures, features, sparsity: 0.9);
    QuantizedMatrix pw = Pruning.QuantizePerChannel(pruned, outFeatures, features);
    SparseMatrix sw = SparseMatrix.FromDense(pw.Values, outFeatures, features, SparseFormat.Csr);
    var x = new sbyte[tokens * features];
    for (int i = 0; i < x.Length; i++) x[i] = (sbyte)rng.Next(-127, 128);
    int[] ys = session.SparseInt8Gemm(sw, x, tokens);
    int bad = 0, nonZeros = pw.Values.Count(v => v != 0);
    for (int i = 0; i < tokens; i++)
        for (int j = 0; j < outFeatures; j++)
        {
            long s = 0;
            for (int p = 0; p < features; p++) s += (long)x[i * features + p] * pw.Values[j * features + p];
            if (ys[i * outFeatures + j] != s) bad++;
        }
    Check("sparse int8 GEMM (CSR)", bad == 0 && nonZeros <= outFeatures * features / 10 + outFeatures,
        $"{tokens}x{outFeatures}x{features}, {nonZeros} non-zeros, {bad} outputs differ from the int64 loop");
}

// Attention: causal, grouped-query, against a float64 softmax loop.
{
    var shape = new AttentionShape(Batch: 2, Heads: 4, KvHeads: 2, QueryLength: 17, KeyLength: 17, HeadDim: 32, Causal: true);
    var q = new float[shape.QueryElements]; var kk = new float[shape.KeyElements]; var v = new float[shape.KeyElements];
    foreach (var t in new[] { q, kk, v }) for (int i = 0; i < t.Length; i++) t[i] = (float)(rng.NextDouble() * 2 - 1);
    float[] o = session.Attention(q, kk, v, shape);
    int sq = shape.QueryLength, sk = shape.KeyLength, d = shape.HeadDim, group = shape.Heads / shape.KvHeads;
    double scale = 1 / Math.Sqrt(d), maxErr = 0;
    for (int bIdx = 0; bIdx < shape.Batch; bIdx++)
        for (int h = 0; h < shape.Heads; h++)
        {
            int kvBase = (bIdx * shape.KvHeads + h / group) * sk * d, qBase = (bIdx * shape.Heads + h) * sq * d;
            for (int i = 0; i < sq; i++)
            {
                int visible = i + (sk - sq) + 1;
                var s = new double[visible];
                for (int j = 0; j < visible; j++)
                {
                    double dot = 0;
                    for (int e = 0; e < d; e++) dot += (double)q[qBase + i * d + e] * kk[kvBase + j * d + e];
                    s[j] = dot * scale;
                }
                double max = s.Max(), sum = 0;
                for (int j = 0; j < visible; j++) { s[j] = Math.Exp(s[j] - max); sum += s[j]; }
                for (int e = 0; e < d; e++)
                {
                    double acc = 0;
                    for (int j = 0; j < visible; j++) acc += s[j] / sum * v[kvBase + j * d + e];
                    maxErr = Math.Max(maxErr, Math.Abs(acc - o[qBase + i * d + e]));
                }
            }
        }
    Check("attention (causal, GQA)", maxErr < 1e-4, $"B2 H4 KvH2 S17 D32, max abs error {maxErr:E2} against float64");
}

// A backend that cannot run says why (not a failure here: this machine may or may not have a GPU).
try
{
    using var cuda = KernelSession.Create(Backend.Cuda);
    Console.WriteLine($"info: CUDA is usable here ({cuda.DeviceName})");
}
catch (BackendUnavailableException e)
{
    Console.WriteLine($"info: BackendUnavailableException for CUDA: {e.Reason}");
}

Console.WriteLine(failures == 0 ? "consumer app: all checks passed" : $"consumer app: {failures} check(s) failed");
return failures == 0 ? 0 : 1;
EOF

run "build consumer app" dotnet build "$app/KernelsConsumer.csproj" -c Release
# The consumer got Kernels.Device (and ILGPU) through the single Kernels reference.
step="transitive Kernels.Device"
[ -f "$app/bin/Release/net10.0/Kernels.Device.dll" ] || fail "Kernels.Device.dll is not in the consumer's output"
step="run consumer app"
echo "== $step"
dotnet "$app/bin/Release/net10.0/KernelsConsumer.dll" || fail "exit code $?"

# The tool, from the feed, into a temporary tool path (run in $work so that its nuget.config applies).
run "dotnet tool install Kernels.Cli" bash -c "cd '$work' && dotnet tool install --tool-path '$tools' --add-source '$feed' Kernels.Cli --version '$version'"
step="kernels devices"
echo "== $step"
"$tools/kernels" devices || fail "exit code $?"
"$tools/kernels" --version 2>/dev/null | head -n 1 | sed 's/^/kernels --version: /'

echo "consumer-test: PASSED (Kernels $version: pack, consumer app, tool \`kernels devices\`) in $(( SECONDS - start )) s"
