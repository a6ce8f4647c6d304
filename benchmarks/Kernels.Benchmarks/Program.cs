using BenchmarkDotNet.Running;

namespace Kernels.Benchmarks;

/// <summary>Entry point: <c>dotnet run -c Release --project benchmarks/Kernels.Benchmarks -- --filter '*Int8Gemm*'</c>.</summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
