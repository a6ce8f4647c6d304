using System.Globalization;

namespace Kernels.Tests.TensorCore;

/// <summary>
/// A small interpreter for exactly the PTX subset <see cref="Kernels.DeviceCode.Ptx.TensorCorePtx"/>
/// emits. It parses the generated text and runs a whole grid on the CPU: blocks one after another,
/// the warps of a block in lockstep (one instruction for all 32 lanes at a time), each warp until it
/// reaches <c>bar.sync</c> or <c>ret</c>, the barrier released when every warp of the block waits.
/// </summary>
/// <remarks>
/// <para>Semantics and where they come from:</para>
/// <list type="bullet">
/// <item><c>mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32</c>: D = C + A·Bᵀ (A 16×32, B stored n-major
/// 8×32, int32 wrapping), with the fragment layout verified on the H200 (g = lane/4, t = lane%4):
/// a0 = A[g][4t..4t+3], a1 = A[g+8][4t..], a2 = A[g][16+4t..], a3 = A[g+8][16+4t..] (byte j of the
/// register = element 4t+j); b0 = B[g][4t..], b1 = B[g][16+4t..]; d0,d1 = D[g][2t, 2t+1], d2,d3 = D[g+8][2t, 2t+1].</item>
/// <item><c>ldmatrix.sync.aligned.m8n8.x{1,2,4}.shared.b16</c> (PTX ISA, "Warp-level matrix load
/// instruction: ldmatrix", read through its mirror in the ptx-90-parser crate docs, and Apache TVM's
/// ldmatrix tile-op docs: "lane 8*matrix+row provides that row's shared address", "register word
/// (matrix,row,word) belongs to lane 4*row+word"): lane 8i+r gives the address of row r (16 bytes) of
/// matrix i; register i of lane l receives the b16 elements 2(l%4), 2(l%4)+1 of row l/4 of matrix i
/// (bytes 4(l%4)..4(l%4)+3). Row addresses must be 16-byte aligned.</item>
/// <item><c>cp.async.cg.shared.global [dst], [src], 16, src-size</c> (PTX ISA, "cp.async", same mirror:
/// "src-size ... must be less than cp-size. In such case, remaining bytes in destination dst are
/// filled with zeros"): copies src-size bytes and fills the rest of the 16 with zeros; both addresses
/// aligned to 16 (the ISA's alignment rule for cp-size). Run
/// synchronously at issue; <c>commit_group</c>/<c>wait_group</c> are no-ops (so the interpreter
/// cannot find a missing wait, only wrong data, wrong addresses and missing barriers between warps).</item>
/// <item>Global memory: allocations in one flat address space; any access outside an allocation, or
/// misaligned for its size, throws. Stores are counted per address for exactly-once checks.</item>
/// <item>Branches must be uniform across a warp (the generator only emits uniform branches); a
/// divergent one throws.</item>
/// </list>
/// </remarks>
internal sealed class PtxInterpreter
{
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    public PtxInterpreter(string module)
    {
        string[] lines = module.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            string line = StripComment(lines[i]).Trim();
            if (line.StartsWith(".visible .entry ", StringComparison.Ordinal))
            {
                Entry entry = ParseEntry(lines, ref i, line);
                _entries.Add(entry.Name, entry);
            }
            else if (line.Length > 0 && !line.StartsWith(".version", StringComparison.Ordinal)
                && !line.StartsWith(".target", StringComparison.Ordinal) && !line.StartsWith(".address_size", StringComparison.Ordinal))
            {
                throw new FormatException($"line {i + 1}: unexpected module-level text '{line}'");
            }
        }
    }

    public IReadOnlyCollection<string> EntryNames => _entries.Keys;

    /// <summary>Every opcode of the module (with its guard form: "@p " or "@!p " prefix when predicated).</summary>
    public IReadOnlySet<string> Opcodes => _entries.Values
        .SelectMany(e => e.Code)
        .Select(Form)
        .ToHashSet(StringComparer.Ordinal);

    private static string Form(Instruction ins) =>
        (ins.GuardRegister < 0 ? "" : ins.GuardNegated ? "@!p " : "@p ") + ins.Opcode;

    /// <summary>Instruction forms executed (see <see cref="Opcodes"/>; all lanes of a warp count once), for coverage.</summary>
    public Dictionary<string, long> Executed { get; } = new(StringComparer.Ordinal);

    // ------------------------------------------------------------------ memory

    /// <summary>The emulated global memory: allocations at 256-byte aligned addresses with gaps between them.</summary>
    internal sealed class GlobalMemory
    {
        private readonly List<(ulong Start, byte[] Data, int[] Stores)> _allocations = [];
        private ulong _next = 0x1000_0000;

        public ulong Allocate(byte[] data)
        {
            ulong start = _next;
            _allocations.Add((start, data, new int[data.Length]));
            _next += ((ulong)data.Length + 511) / 256 * 256 + 256;
            return start;
        }

        public ulong Allocate<T>(T[] values)
            where T : unmanaged
        {
            byte[] bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
            return Allocate(bytes);
        }

        public byte[] Bytes(ulong start) => Find(start, 0).Data;

        public int[] Stores(ulong start) => Find(start, 0).Stores;

        public (byte[] Data, int Offset, int[] Stores) Locate(ulong address, int size)
        {
            (ulong start, byte[] data, int[] stores) = Find(address, size);
            return (data, (int)(address - start), stores);
        }

        private (ulong Start, byte[] Data, int[] Stores) Find(ulong address, int size)
        {
            foreach ((ulong start, byte[] data, int[] stores) in _allocations)
            {
                if (address >= start && address + (ulong)size <= start + (ulong)data.Length && (size > 0 || address < start + (ulong)data.Length))
                    return (start, data, stores);
            }
            throw new InvalidOperationException($"global access of {size} bytes at 0x{address:X} is outside every allocation");
        }
    }

    // ------------------------------------------------------------------ parsing

    private enum OperandKind { Register, Immediate, Special, Symbol, Address, Vector }

    private sealed record Operand(OperandKind Kind, int Register = -1, long Value = 0, string Name = "", Operand? Base = null, Operand[]? Items = null);

    private sealed record Instruction(string Opcode, string[] Parts, Operand[] Operands, int GuardRegister, bool GuardNegated, int Line, string Text);

    private sealed class Entry
    {
        public string Name = "";
        public List<string> Parameters = [];
        public Dictionary<string, int> Registers = new(StringComparer.Ordinal);
        public Dictionary<string, (int Offset, int Size)> Shared = new(StringComparer.Ordinal);
        public int SharedBytes;
        public Dictionary<string, int> Labels = new(StringComparer.Ordinal);
        public List<Instruction> Code = [];
        public int MaxThreads;
    }

    private static string StripComment(string line)
    {
        int c = line.IndexOf("//", StringComparison.Ordinal);
        return c < 0 ? line : line[..c];
    }

    private static Entry ParseEntry(string[] lines, ref int i, string header)
    {
        var entry = new Entry { Name = header[".visible .entry ".Length..].TrimEnd('(').Trim() };
        i++;
        for (; i < lines.Length; i++)
        {
            string line = StripComment(lines[i]).Trim().TrimEnd(',');
            if (line == ")")
                break;
            string[] words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (words.Length != 3 || words[0] != ".param")
                throw new FormatException($"line {i + 1}: expected a parameter, got '{line}'");
            entry.Parameters.Add(words[2]);
        }
        for (i++; i < lines.Length; i++)
        {
            string line = StripComment(lines[i]).Trim();
            if (line == "{")
                break;
            if (line.StartsWith(".maxntid ", StringComparison.Ordinal))
                entry.MaxThreads = int.Parse(line[".maxntid ".Length..].Split(',')[0], CultureInfo.InvariantCulture);
            else if (!line.StartsWith(".minnctapersm ", StringComparison.Ordinal) && line.Length > 0)
                throw new FormatException($"line {i + 1}: unexpected '{line}' before the body");
        }
        var pending = new List<(string Text, int Line)>();
        for (i++; i < lines.Length; i++)
        {
            string line = StripComment(lines[i]).Trim();
            if (line.Length == 0)
                continue;
            if (line == "}")
                break;
            if (line.StartsWith(".reg ", StringComparison.Ordinal))
            {
                string name = line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[2].TrimEnd(';');
                entry.Registers.Add(name, entry.Registers.Count);
            }
            else if (line.StartsWith(".shared ", StringComparison.Ordinal))
            {
                // .shared .align A .b8 name[size];
                string[] words = line.TrimEnd(';').Split(' ', StringSplitOptions.RemoveEmptyEntries);
                int align = int.Parse(words[2], CultureInfo.InvariantCulture);
                string decl = words[4];
                string name = decl[..decl.IndexOf('[', StringComparison.Ordinal)];
                int size = int.Parse(decl[(decl.IndexOf('[', StringComparison.Ordinal) + 1)..^1], CultureInfo.InvariantCulture);
                int offset = (entry.SharedBytes + align - 1) / align * align;
                entry.Shared.Add(name, (offset, size));
                entry.SharedBytes = offset + size;
            }
            else if (line.EndsWith(':'))
            {
                entry.Labels.Add(line[..^1], pending.Count);
            }
            else if (line.EndsWith(';'))
            {
                pending.Add((line[..^1], i + 1));
            }
            else
            {
                throw new FormatException($"line {i + 1}: cannot parse '{line}'");
            }
        }
        foreach ((string text, int lineNumber) in pending)
            entry.Code.Add(ParseInstruction(entry, text, lineNumber));
        return entry;
    }

    private static Instruction ParseInstruction(Entry entry, string text, int line)
    {
        string rest = text;
        int guard = -1;
        bool negated = false;
        if (rest.StartsWith('@'))
        {
            int space = rest.IndexOf(' ', StringComparison.Ordinal);
            string g = rest[1..space];
            negated = g.StartsWith('!');
            guard = RegisterIndex(entry, negated ? g[1..] : g, line);
            rest = rest[(space + 1)..].Trim();
        }
        int split = rest.IndexOf(' ', StringComparison.Ordinal);
        string opcode = split < 0 ? rest : rest[..split];
        string operandText = split < 0 ? "" : rest[(split + 1)..];
        var operands = SplitTopLevel(operandText).Select(o => ParseOperand(entry, o, line)).ToArray();
        return new Instruction(opcode, opcode.Split('.'), operands, guard, negated, line, text);
    }

    private static List<string> SplitTopLevel(string text)
    {
        var result = new List<string>();
        int depth = 0, start = 0;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c is '{' or '[')
                depth++;
            else if (c is '}' or ']')
                depth--;
            else if (c == ',' && depth == 0)
            {
                result.Add(text[start..i].Trim());
                start = i + 1;
            }
        }
        string last = text[start..].Trim();
        if (last.Length > 0)
            result.Add(last);
        return result;
    }

    private static int RegisterIndex(Entry entry, string name, int line) =>
        name.StartsWith('%') && entry.Registers.TryGetValue(name, out int index)
            ? index
            : throw new FormatException($"line {line}: undeclared register '{name}'");

    private static Operand ParseOperand(Entry entry, string text, int line)
    {
        if (text.StartsWith('{'))
            return new Operand(OperandKind.Vector, Items: SplitTopLevel(text[1..^1]).Select(o => ParseOperand(entry, o, line)).ToArray());
        if (text.StartsWith('['))
        {
            string inner = text[1..^1];
            long offset = 0;
            int plus = inner.IndexOf('+', StringComparison.Ordinal);
            if (plus >= 0)
            {
                offset = long.Parse(inner[(plus + 1)..], CultureInfo.InvariantCulture);
                inner = inner[..plus];
            }
            return new Operand(OperandKind.Address, Value: offset, Base: ParseOperand(entry, inner.Trim(), line));
        }
        if (text is "%tid.x" or "%ctaid.x" or "%ctaid.y" or "%ctaid.z")
            return new Operand(OperandKind.Special, Name: text);
        if (text.StartsWith('%'))
            return new Operand(OperandKind.Register, Register: RegisterIndex(entry, text, line));
        if (text.StartsWith("0f", StringComparison.Ordinal) && text.Length == 10)
            return new Operand(OperandKind.Immediate, Value: long.Parse(text[2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture));
        if (text.Length > 0 && (char.IsDigit(text[0]) || text[0] == '-'))
            return new Operand(OperandKind.Immediate, Value: long.Parse(text, CultureInfo.InvariantCulture));
        return new Operand(OperandKind.Symbol, Name: text);
    }

    // ------------------------------------------------------------------ execution

    private sealed class Warp
    {
        public int Pc;
        public bool AtBarrier;
        public bool Exited;
        public long[][] Lanes = [];
    }

    /// <summary>Runs <paramref name="entryName"/> on a grid; parameter values in declaration order (pointers as addresses).</summary>
    public void Launch(string entryName, (int X, int Y, int Z) grid, int threads, GlobalMemory memory, params long[] parameters)
    {
        Entry entry = _entries[entryName];
        if (parameters.Length != entry.Parameters.Count)
            throw new ArgumentException($"{entryName} takes {entry.Parameters.Count} parameters, got {parameters.Length}");
        if (threads % 32 != 0 || threads > entry.MaxThreads)
            throw new ArgumentException($"{threads} threads: must be a multiple of 32 and ≤ .maxntid {entry.MaxThreads}");
        for (int z = 0; z < grid.Z; z++)
        {
            for (int y = 0; y < grid.Y; y++)
            {
                for (int x = 0; x < grid.X; x++)
                    RunBlock(entry, (x, y, z), threads, memory, parameters);
            }
        }
    }

    private void RunBlock(Entry entry, (int X, int Y, int Z) block, int threads, GlobalMemory memory, long[] parameters)
    {
        var shared = new byte[Math.Max(entry.SharedBytes, 1)];
        // Shared memory starts as garbage: a kernel must not read what it did not write.
        new Random(block.X * 7919 + block.Y * 104729 + block.Z).NextBytes(shared);
        var warps = new Warp[threads / 32];
        for (int w = 0; w < warps.Length; w++)
        {
            warps[w] = new Warp { Lanes = new long[32][] };
            for (int l = 0; l < 32; l++)
                warps[w].Lanes[l] = new long[entry.Registers.Count];
        }
        var context = new BlockContext(entry, block, memory, shared, parameters);
        while (true)
        {
            bool progressed = false;
            for (int w = 0; w < warps.Length; w++)
            {
                Warp warp = warps[w];
                if (warp.Exited || warp.AtBarrier)
                    continue;
                RunWarp(context, warp, w);
                progressed = true;
            }
            int exited = warps.Count(x => x.Exited), waiting = warps.Count(x => x.AtBarrier);
            if (exited == warps.Length)
                return;
            if (waiting > 0 && waiting + exited == warps.Length)
            {
                if (exited > 0)
                    throw new InvalidOperationException($"{entry.Name}: bar.sync with {exited} warps exited");
                foreach (Warp warp in warps)
                    warp.AtBarrier = false;
            }
            else if (!progressed)
            {
                throw new InvalidOperationException($"{entry.Name}: deadlock");
            }
        }
    }

    private sealed record BlockContext(Entry Entry, (int X, int Y, int Z) Block, GlobalMemory Memory, byte[] Shared, long[] Parameters);

    private void Count(string opcode)
    {
        Executed.TryGetValue(opcode, out long n);
        Executed[opcode] = n + 1;
    }

    private void RunWarp(BlockContext context, Warp warp, int warpIndex)
    {
        List<Instruction> code = context.Entry.Code;
        long steps = 0;
        while (true)
        {
            if (warp.Pc >= code.Count)
                throw new InvalidOperationException($"{context.Entry.Name}: ran past the end without ret");
            if (++steps > 50_000_000)
                throw new InvalidOperationException($"{context.Entry.Name}: too many steps (endless loop?)");
            Instruction ins = code[warp.Pc];
            Count(Form(ins));
            try
            {
                switch (ins.Parts[0])
                {
                    case "bra":
                        {
                            bool? taken = Uniform(warp, ins, l => Guard(warp.Lanes[l], ins));
                            warp.Pc = taken == true ? context.Entry.Labels[ins.Operands[0].Name] : warp.Pc + 1;
                            continue;
                        }
                    case "ret":
                        Uniform(warp, ins, l => Guard(warp.Lanes[l], ins));
                        warp.Exited = true;
                        return;
                    case "bar":
                        warp.AtBarrier = true;
                        warp.Pc++;
                        return;
                    case "ldmatrix":
                        LdMatrix(context, warp, ins);
                        break;
                    case "mma":
                        Mma(warp, ins);
                        break;
                    default:
                        for (int l = 0; l < 32; l++)
                        {
                            if (Guard(warp.Lanes[l], ins))
                                ExecuteLane(context, warp.Lanes[l], ins, warpIndex * 32 + l);
                        }
                        break;
                }
            }
            catch (Exception ex) when (ex is not PtxExecutionException)
            {
                throw new PtxExecutionException($"{context.Entry.Name} line {ins.Line} '{ins.Text}' (block {context.Block}, warp {warpIndex}): {ex.Message}", ex);
            }
            warp.Pc++;
        }
    }

    private static bool Guard(long[] regs, Instruction ins) =>
        ins.GuardRegister < 0 || ((regs[ins.GuardRegister] != 0) ^ ins.GuardNegated);

    private static bool? Uniform(Warp warp, Instruction ins, Func<int, bool> value)
    {
        bool first = value(0);
        for (int l = 1; l < 32; l++)
        {
            if (value(l) != first)
                throw new InvalidOperationException($"divergent '{ins.Opcode}' in a warp");
        }
        return first;
    }

    private static long Read(BlockContext context, long[] regs, Operand op, int thread) => op.Kind switch
    {
        OperandKind.Register => regs[op.Register],
        OperandKind.Immediate => op.Value,
        OperandKind.Special => op.Name switch
        {
            "%tid.x" => thread,
            "%ctaid.x" => context.Block.X,
            "%ctaid.y" => context.Block.Y,
            _ => context.Block.Z,
        },
        OperandKind.Symbol when context.Entry.Shared.TryGetValue(op.Name, out var s) => s.Offset,
        _ => throw new InvalidOperationException($"cannot read operand {op}"),
    };

    private static ulong AddressOf(BlockContext context, long[] regs, Operand op, int thread)
    {
        if (op.Kind != OperandKind.Address)
            throw new InvalidOperationException("expected an address operand");
        if (op.Base!.Kind == OperandKind.Symbol)
        {
            int p = context.Entry.Parameters.IndexOf(op.Base.Name);
            if (p >= 0)
                return (ulong)p; // a parameter's "address": its index (only ld.param uses it)
        }
        return (ulong)(Read(context, regs, op.Base, thread) + op.Value);
    }

    private static int S32(long v) => (int)v;

    private static uint U32(long v) => (uint)v;

    private static long Z32(long v) => (long)(uint)v;

    private static float F32(long v) => BitConverter.Int32BitsToSingle((int)v);

    private static long FromF32(float f) => Z32(BitConverter.SingleToInt32Bits(f));

    private static void ExecuteLane(BlockContext context, long[] regs, Instruction ins, int thread)
    {
        Operand[] o = ins.Operands;
        long A(int i) => Read(context, regs, o[i], thread);
        void Set(long value) => regs[o[0].Register] = value;
        string type = ins.Parts[^1];
        switch (ins.Opcode)
        {
            case "ld.param.u64":
            case "ld.param.u32":
                {
                    long value = context.Parameters[(int)AddressOf(context, regs, o[1], thread)];
                    Set(ins.Opcode.EndsWith("u32", StringComparison.Ordinal) ? Z32(value) : value);
                    return;
                }
            case "mov.u32":
            case "mov.b32":
            case "mov.f32":
                Set(Z32(A(1)));
                return;
            case "cvt.u64.u32":
                Set(Z32(A(1)));
                return;
            case "cvt.rn.f32.s32":
                Set(FromF32(S32(A(1))));
                return;
            case "add.u64":
                Set(A(1) + A(2));
                return;
            case "mul.lo.u64":
                Set((long)((ulong)A(1) * (ulong)A(2)));
                return;
            case "shl.b64":
                Set(A(1) << (int)A(2));
                return;
            case "add.s32":
                Set(Z32(S32(A(1)) + S32(A(2))));
                return;
            case "sub.s32":
                Set(Z32(S32(A(1)) - S32(A(2))));
                return;
            case "mul.lo.s32":
                Set(Z32(S32(A(1)) * S32(A(2))));
                return;
            case "mad.lo.s32":
                Set(Z32(S32(A(1)) * S32(A(2)) + S32(A(3))));
                return;
            case "mul.wide.s32":
                Set((long)S32(A(1)) * S32(A(2)));
                return;
            case "div.s32":
                Set(Z32(S32(A(1)) / S32(A(2))));
                return;
            case "div.u32":
                Set(Z32(U32(A(1)) / U32(A(2))));
                return;
            case "rem.u32":
                Set(Z32(U32(A(1)) % U32(A(2))));
                return;
            case "max.s32":
                Set(Z32(Math.Max(S32(A(1)), S32(A(2)))));
                return;
            case "min.s32":
                Set(Z32(Math.Min(S32(A(1)), S32(A(2)))));
                return;
            case "shl.b32":
                Set(Z32(U32(A(1)) << (int)A(2)));
                return;
            case "shr.u32":
                Set(Z32(U32(A(1)) >> (int)A(2)));
                return;
            case "and.b32":
                Set(Z32(U32(A(1)) & U32(A(2))));
                return;
            case "xor.b32":
                Set(Z32(U32(A(1)) ^ U32(A(2))));
                return;
            case "and.pred":
                Set((A(1) != 0 && A(2) != 0) ? 1 : 0);
                return;
            case "selp.b32":
                Set(A(3) != 0 ? Z32(A(1)) : Z32(A(2)));
                return;
            case "selp.b64":
                Set(A(3) != 0 ? A(1) : A(2));
                return;
            case "mul.rn.f32":
                Set(FromF32(F32(A(1)) * F32(A(2))));
                return;
            case "add.rn.f32":
                Set(FromF32(F32(A(1)) + F32(A(2))));
                return;
            case "cp.async.commit_group":
            case "cp.async.wait_group":
                return;
            case "cp.async.cg.shared.global":
                {
                    int dst = (int)AddressOf(context, regs, o[0], thread);
                    ulong src = AddressOf(context, regs, o[1], thread);
                    int size = (int)A(2), n = S32(A(3));
                    if (size != 16 || n < 0 || n > size)
                        throw new InvalidOperationException($"cp.async.cg: cp-size {size}, src-size {n}");
                    if (dst % 16 != 0 || src % 16 != 0)
                        throw new InvalidOperationException($"cp.async.cg: misaligned dst 0x{dst:X} or src 0x{src:X}");
                    CheckShared(context, dst, 16);
                    if (n > 0)
                    {
                        (byte[] data, int offset, _) = context.Memory.Locate(src, n);
                        Array.Copy(data, offset, context.Shared, dst, n);
                    }
                    Array.Clear(context.Shared, dst + n, 16 - n);
                    return;
                }
            case "ld.global.nc.f32":
                {
                    ulong address = AddressOf(context, regs, o[1], thread);
                    if (address % 4 != 0)
                        throw new InvalidOperationException("misaligned ld.f32");
                    (byte[] data, int offset, _) = context.Memory.Locate(address, 4);
                    Set(Z32(BitConverter.ToInt32(data, offset)));
                    return;
                }
            case "ld.global.nc.u32":
                {
                    ulong address = AddressOf(context, regs, o[1], thread);
                    if (address % 4 != 0)
                        throw new InvalidOperationException("misaligned ld.u32");
                    (byte[] data, int offset, _) = context.Memory.Locate(address, 4);
                    Set(Z32(BitConverter.ToInt32(data, offset)));
                    return;
                }
            case "ld.global.nc.v4.u32":
                {
                    ulong address = AddressOf(context, regs, o[1], thread);
                    if (address % 16 != 0)
                        throw new InvalidOperationException($"misaligned ld.v4 at 0x{address:X}");
                    (byte[] data, int offset, _) = context.Memory.Locate(address, 16);
                    for (int e = 0; e < 4; e++)
                        regs[o[0].Items![e].Register] = Z32(BitConverter.ToInt32(data, offset + 4 * e));
                    return;
                }
            case "st.shared.b32":
                {
                    int address = (int)AddressOf(context, regs, o[0], thread);
                    if (address % 4 != 0)
                        throw new InvalidOperationException("misaligned st.shared.b32");
                    CheckShared(context, address, 4);
                    BitConverter.TryWriteBytes(context.Shared.AsSpan(address, 4), (int)A(1));
                    return;
                }
            case "ld.shared.b32":
                {
                    int address = (int)AddressOf(context, regs, o[1], thread);
                    if (address % 4 != 0)
                        throw new InvalidOperationException("misaligned ld.shared.b32");
                    CheckShared(context, address, 4);
                    Set(Z32(BitConverter.ToInt32(context.Shared, address)));
                    return;
                }
            case "st.global.b32":
            case "st.global.f32":
                {
                    ulong address = AddressOf(context, regs, o[0], thread);
                    if (address % 4 != 0)
                        throw new InvalidOperationException("misaligned st.32");
                    (byte[] data, int offset, int[] stores) = context.Memory.Locate(address, 4);
                    BitConverter.TryWriteBytes(data.AsSpan(offset, 4), (int)A(1));
                    stores[offset]++;
                    return;
                }
            default:
                if (ins.Parts[0] == "setp")
                {
                    int a = S32(A(1)), b = S32(A(2));
                    if (type != "s32")
                        throw new NotSupportedException($"setp type {type}");
                    bool r = ins.Parts[1] switch
                    {
                        "eq" => a == b,
                        "ne" => a != b,
                        "lt" => a < b,
                        "le" => a <= b,
                        "gt" => a > b,
                        "ge" => a >= b,
                        _ => throw new NotSupportedException($"setp.{ins.Parts[1]}"),
                    };
                    Set(r ? 1 : 0);
                    return;
                }
                throw new NotSupportedException($"the interpreter does not know '{ins.Opcode}'");
        }
    }

    private static void CheckShared(BlockContext context, long address, int size)
    {
        if (address < 0 || address + size > context.Entry.SharedBytes)
            throw new InvalidOperationException($"shared access of {size} bytes at {address} outside {context.Entry.SharedBytes} bytes");
    }

    private static void LdMatrix(BlockContext context, Warp warp, Instruction ins)
    {
        if (ins.Opcode is not ("ldmatrix.sync.aligned.m8n8.x1.shared.b16" or "ldmatrix.sync.aligned.m8n8.x2.shared.b16" or "ldmatrix.sync.aligned.m8n8.x4.shared.b16"))
            throw new NotSupportedException($"the interpreter does not know '{ins.Opcode}'");
        if (ins.GuardRegister >= 0)
            throw new NotSupportedException("predicated ldmatrix");
        int count = ins.Parts[4] switch { "x1" => 1, "x2" => 2, _ => 4 };
        Operand[] destinations = ins.Operands[0].Items!;
        if (destinations.Length != count)
            throw new InvalidOperationException($"ldmatrix .x{count} with {destinations.Length} registers");
        var rows = new int[32];
        for (int l = 0; l < 8 * count; l++)
        {
            int address = (int)AddressOf(context, warp.Lanes[l], ins.Operands[1], l);
            if (address % 16 != 0)
                throw new InvalidOperationException($"ldmatrix row address {address} of lane {l} is not 16-byte aligned");
            CheckShared(context, address, 16);
            rows[l] = address;
        }
        var results = new int[32, 4];
        for (int l = 0; l < 32; l++)
        {
            for (int i = 0; i < count; i++)
            {
                int rowAddress = rows[8 * i + l / 4];
                results[l, i] = BitConverter.ToInt32(context.Shared, rowAddress + 4 * (l % 4));
            }
        }
        for (int l = 0; l < 32; l++)
        {
            for (int i = 0; i < count; i++)
                warp.Lanes[l][destinations[i].Register] = Z32(results[l, i]);
        }
    }

    private static sbyte Byte(long word, int j) => (sbyte)(word >> (8 * j));

    /// <summary>
    /// <c>mma.sp{::ordered_metadata}.sync.aligned.m16n8k64.row.col.s32.s8.s8.s32 d, a, b, c, e, 0</c>:
    /// D = C + A·Bᵀ with A (16×64) given as its kept values and metadata. Layouts as documented on
    /// <see cref="Kernels.DeviceCode.Ptx.SparseTensorCorePtx"/> (g = lane/4, t = lane%4): A register q of
    /// lane (g, t) = row g + 8(q&amp;1), chunks 2t + 8(q&gt;&gt;1) and the next, two kept values each, in
    /// the order of their indices (ISA text); metadata register of lane (g, t) = row g + 8(t&amp;1), chunks
    /// 8(t&gt;&gt;1) .. +7, chunk i in bits 4i..4i+3, low pair the first index (the ISA's figures 136/137
    /// are images: this assignment is a third party's hardware probe, see the generator); sparsity
    /// selector 0 (ISA text: all four threads of a group contribute); B register q = k 16q + 4t .. +3 of
    /// column g (figures 132-135, assumed to be two dense m16n8k32 B fragments). Index pairs with equal
    /// positions are undefined behaviour (ISA text) and throw; with ::ordered_metadata the first index
    /// must be the smaller (the ISA's list of meaningful values).
    /// </summary>
    private static void MmaSparse(Warp warp, Instruction ins, bool ordered)
    {
        if (ins.GuardRegister >= 0)
            throw new NotSupportedException("predicated mma");
        Operand[] d = ins.Operands[0].Items!, a = ins.Operands[1].Items!, b = ins.Operands[2].Items!, c = ins.Operands[3].Items!;
        Operand e = ins.Operands[4], selector = ins.Operands[5];
        if (selector.Kind != OperandKind.Immediate || selector.Value != 0)
            throw new InvalidOperationException("the sparsity selector of m16n8k64 .s8 must be the immediate 0");
        var kept = new sbyte[16, 32];
        var nibbles = new int[16, 16];
        var mb = new sbyte[8, 64];
        var mc = new int[16, 8];
        for (int l = 0; l < 32; l++)
        {
            long[] r = warp.Lanes[l];
            int g = l / 4, t = l % 4;
            for (int q = 0; q < 4; q++)
            {
                int row = g + 8 * (q & 1), chunk = 2 * t + 8 * (q >> 1);
                for (int j = 0; j < 4; j++)
                {
                    kept[row, 2 * chunk + j] = Byte(r[a[q].Register], j);
                    mb[g, 16 * q + 4 * t + j] = Byte(r[b[q].Register], j);
                }
            }
            long meta = r[e.Register];
            for (int i = 0; i < 8; i++)
                nibbles[g + 8 * (t & 1), 8 * (t >> 1) + i] = (int)((meta >> (4 * i)) & 0xF);
            mc[g, 2 * t] = (int)r[c[0].Register];
            mc[g, 2 * t + 1] = (int)r[c[1].Register];
            mc[g + 8, 2 * t] = (int)r[c[2].Register];
            mc[g + 8, 2 * t + 1] = (int)r[c[3].Register];
        }
        var ma = new sbyte[16, 64];
        for (int row = 0; row < 16; row++)
        {
            for (int chunk = 0; chunk < 16; chunk++)
            {
                int first = nibbles[row, chunk] & 3, second = nibbles[row, chunk] >> 2;
                if (first == second || (ordered && first > second))
                    throw new InvalidOperationException($"metadata 0x{nibbles[row, chunk]:X} of row {row}, chunk {chunk} is undefined behaviour{(ordered ? " for ::ordered_metadata" : "")}");
                ma[row, 4 * chunk + first] = kept[row, 2 * chunk];
                ma[row, 4 * chunk + second] = kept[row, 2 * chunk + 1];
            }
        }
        for (int l = 0; l < 32; l++)
        {
            long[] r = warp.Lanes[l];
            int g = l / 4, t = l % 4;
            for (int h = 0; h < 2; h++)
            {
                for (int col = 0; col < 2; col++)
                {
                    int i = g + 8 * h, j = 2 * t + col, sum = mc[i, j];
                    for (int k = 0; k < 64; k++)
                        sum = unchecked(sum + ma[i, k] * mb[j, k]);
                    r[d[2 * h + col].Register] = Z32(sum);
                }
            }
        }
    }

    private static void Mma(Warp warp, Instruction ins)
    {
        if (ins.Opcode is "mma.sp.sync.aligned.m16n8k64.row.col.s32.s8.s8.s32" or "mma.sp::ordered_metadata.sync.aligned.m16n8k64.row.col.s32.s8.s8.s32")
        {
            MmaSparse(warp, ins, ordered: ins.Opcode.StartsWith("mma.sp::ordered_metadata", StringComparison.Ordinal));
            return;
        }
        if (ins.Opcode != "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32")
            throw new NotSupportedException($"the interpreter does not know '{ins.Opcode}'");
        if (ins.GuardRegister >= 0)
            throw new NotSupportedException("predicated mma");
        Operand[] d = ins.Operands[0].Items!, a = ins.Operands[1].Items!, b = ins.Operands[2].Items!, c = ins.Operands[3].Items!;
        var ma = new sbyte[16, 32];
        var mb = new sbyte[8, 32];
        var mc = new int[16, 8];
        for (int l = 0; l < 32; l++)
        {
            long[] r = warp.Lanes[l];
            int g = l / 4, t = l % 4;
            for (int j = 0; j < 4; j++)
            {
                ma[g, 4 * t + j] = Byte(r[a[0].Register], j);
                ma[g + 8, 4 * t + j] = Byte(r[a[1].Register], j);
                ma[g, 16 + 4 * t + j] = Byte(r[a[2].Register], j);
                ma[g + 8, 16 + 4 * t + j] = Byte(r[a[3].Register], j);
                mb[g, 4 * t + j] = Byte(r[b[0].Register], j);
                mb[g, 16 + 4 * t + j] = Byte(r[b[1].Register], j);
            }
            mc[g, 2 * t] = (int)r[c[0].Register];
            mc[g, 2 * t + 1] = (int)r[c[1].Register];
            mc[g + 8, 2 * t] = (int)r[c[2].Register];
            mc[g + 8, 2 * t + 1] = (int)r[c[3].Register];
        }
        var md = new int[16, 8];
        for (int i = 0; i < 16; i++)
        {
            for (int j = 0; j < 8; j++)
            {
                int sum = mc[i, j];
                for (int k = 0; k < 32; k++)
                    sum = unchecked(sum + ma[i, k] * mb[j, k]);
                md[i, j] = sum;
            }
        }
        for (int l = 0; l < 32; l++)
        {
            long[] r = warp.Lanes[l];
            int g = l / 4, t = l % 4;
            r[d[0].Register] = Z32(md[g, 2 * t]);
            r[d[1].Register] = Z32(md[g, 2 * t + 1]);
            r[d[2].Register] = Z32(md[g + 8, 2 * t]);
            r[d[3].Register] = Z32(md[g + 8, 2 * t + 1]);
        }
    }
}

/// <summary>The interpreted kernel did something the PTX rules forbid (out-of-bounds access, misalignment, divergence).</summary>
internal sealed class PtxExecutionException : Exception
{
    public PtxExecutionException(string message, Exception inner)
        : base(message, inner)
    {
    }
}
