using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using GpuCnn.Models;

namespace GpuCnn.Distributed;

/// <summary>
/// Before ranks train together, they check that they are training the same thing, as DistributedDataParallel checks
/// its parameters' shapes across processes: a rank started with another seed, learning rate, data or checkpoint
/// would otherwise train a different model silently, and one with other buffer sizes would corrupt a collective.
/// </summary>
internal static class RankAgreement
{
    /// <summary>
    /// What <paramref name="trainer"/> will train, as named facts (hashes for weights and data): every rank must hold
    /// the same.
    /// </summary>
    public static List<(string Name, string Value)> Facts(Trainer trainer, Dataset train, Dataset? test, TrainingState state)
    {
        var saved = CultureInfo.CurrentCulture;
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture; // records print numbers in it: ranks may differ in locale
        try
        {
            var model = trainer.Model;
            var weights = model.StateDict();
            ulong weightsHash = 0;
            foreach (var (key, tensor) in weights.OrderBy(w => w.Key, StringComparer.Ordinal))
            {
                weightsHash = Hash(Hash(weightsHash, MemoryMarshal.AsBytes(key.AsSpan())), MemoryMarshal.AsBytes(tensor.Data.AsSpan()));
            }

            return
            [
                ("the model", $"{model.Spec} on {model.InputShape}, normalisation {model.Normalization?.ToString() ?? "none"}"),
                ("the model's initial weights (--seed, --init or --resume)", $"{weightsHash:x16}"),
                ("the training options", trainer.Options.ToString()),
                ("the optimizer", $"{trainer.Optimizer.GetType().Name} {trainer.Optimizer.Settings}"),
                ("the position training starts from (--resume)", state.ToString()),
                ("the training data", DataFact(train)),
                ("the test data", test is null ? "none" : DataFact(test)),
            ];
        }
        finally
        {
            CultureInfo.CurrentCulture = saved;
        }
    }

    /// <summary>
    /// Throws the same <see cref="RanksDifferException"/> on every rank, naming the first rank and fact that differ
    /// from rank 0's, unless all ranks hold <paramref name="facts"/> alike. Every rank must call it.
    /// </summary>
    public static void Require(ICommunicator ranks, IReadOnlyList<(string Name, string Value)> facts)
    {
        if (ranks.Size == 1)
        {
            return;
        }

        // Rank 0's facts travel as UTF-8 bytes, one per float (exact), after their count.
        byte[] mine = Encoding.UTF8.GetBytes(string.Join("\n", facts.Select(f => $"{f.Name}\t{f.Value}")));
        float[] length = [mine.Length];
        ranks.Broadcast(length, 0);
        var carried = new float[(int)length[0]];
        if (ranks.Rank == 0)
        {
            for (int i = 0; i < mine.Length; i++)
            {
                carried[i] = mine[i];
            }
        }

        ranks.Broadcast(carried, 0);
        byte[] rootBytes = [.. carried.Select(b => (byte)b)];
        var root = Encoding.UTF8.GetString(rootBytes).Split('\n').Select(line => line.Split('\t', 2)).Select(p => (Name: p[0], Value: p.Length > 1 ? p[1] : "")).ToList();

        // Each rank votes 1 + the index of its first fact unlike rank 0's (0: all alike); the sum of votes reaches all.
        int unlike = Enumerable.Range(0, Math.Max(root.Count, facts.Count)).FirstOrDefault(i => i >= root.Count || i >= facts.Count || root[i] != facts[i], -1);
        var votes = new float[ranks.Size];
        votes[ranks.Rank] = unlike + 1;
        ranks.AllReduceSum(votes);
        int rank = Array.FindIndex(votes, v => v != 0f);
        if (rank < 0)
        {
            return;
        }

        int fact = Math.Min((int)votes[rank] - 1, root.Count - 1);
        string here = ranks.Rank == rank && fact < facts.Count ? $"; rank {rank}'s: {facts[fact].Value}" : "";
        throw new RanksDifferException(
            $"distributed: rank {rank} differs from rank 0 in {root[fact].Name} (rank 0's: {root[fact].Value}{here}); every rank must run the same command on the same files.");
    }

    private static string DataFact(Dataset data)
    {
        ulong hash = Hash(Hash(0, MemoryMarshal.AsBytes(data.Images.Data.AsSpan())), MemoryMarshal.AsBytes(data.Labels.AsSpan()));
        return $"{data.Count} samples of {data.Images.Shape}, hash {hash:x16}";
    }

    /// <summary>A 64-bit hash of <paramref name="bytes"/> continuing <paramref name="hash"/> (multiply-xorshift over 8-byte words; fast on tens of megabytes).</summary>
    private static ulong Hash(ulong hash, ReadOnlySpan<byte> bytes)
    {
        const ulong prime = 0x9E3779B97F4A7C15;
        var words = MemoryMarshal.Cast<byte, ulong>(bytes);
        foreach (ulong word in words)
        {
            hash = (hash ^ word) * prime;
            hash ^= hash >> 29;
        }

        foreach (byte b in bytes[(words.Length * 8)..])
        {
            hash = (hash ^ b) * prime;
        }

        return (hash ^ (ulong)bytes.Length) * prime;
    }
}

/// <summary>Ranks that were started to train different things (every rank throws it, alike).</summary>
internal sealed class RanksDifferException(string message) : InvalidOperationException(message);
