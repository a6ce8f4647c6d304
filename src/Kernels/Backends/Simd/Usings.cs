// The namespaces of the SIMD kernels, once for the folder (every file here uses them).
global using System.Runtime.CompilerServices;
global using System.Runtime.Intrinsics;
global using System.Runtime.Intrinsics.X86;
