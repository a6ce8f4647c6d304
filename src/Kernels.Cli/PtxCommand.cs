using System.CommandLine;
using Kernels.DeviceCode.Ptx;

namespace Kernels.Cli;

/// <summary>
/// <c>kernels ptx [--out dir]</c>: writes the generated tensor-core PTX (the module the library loads,
/// and one file per kernel) so that <c>ptxas -v</c> can check it on a machine with the CUDA toolkit.
/// </summary>
internal static class PtxCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "Folder to write the .ptx files to.", DefaultValueFactory = _ => "ptx" };
        var command = new Command("ptx", "Write the generated tensor-core PTX (library modules, dense and 2:4 sparse, and one file per dense kernel).") { output };
        command.SetAction(result =>
        {
            string folder = result.GetValue(output) ?? "ptx";
            Directory.CreateDirectory(folder);
            var files = new List<string>();
            void Write(string name, string text)
            {
                string path = Path.Combine(folder, name + ".ptx");
                File.WriteAllText(path, text);
                files.Add(path);
            }
            Write("kernels_tensorcore", TensorCorePtx.LibraryModule());
            foreach (TensorCoreTile tile in TensorCorePtx.GemmTiles)
                Write(tile.Name, TensorCorePtx.Module([tile], []));
            foreach (DecodeTile tile in TensorCorePtx.DecodeTiles)
                Write(tile.Name, TensorCorePtx.Module([], [tile]));
            Write("kernels_sparse_tensorcore", SparseTensorCorePtx.LibraryModule(orderedMetadata: false));
            Write("kernels_sparse_tensorcore_ordered", SparseTensorCorePtx.LibraryModule(orderedMetadata: true));
            foreach (string file in files)
                Console.WriteLine(file);
            return 0;
        });
        return command;
    }
}
