using System.Diagnostics;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// What a training run promises when things go wrong: outputs checked before any data is read, one error line that
/// names the option and the path, checkpoints that survive SIGKILL at any moment and a full disk, and damaged
/// checkpoints reported instead of loaded.
/// </summary>
public sealed class CrashSafetyTests
{
    private const string Spec = "conv(4,3,pad=1),relu,flatten,dense(64),relu,dense(4)";

    [Fact]
    public void Outputs_are_checked_before_any_data_is_read()
    {
        using var temp = Fixtures.TempFolder();
        File.WriteAllText(temp.File("blocker"), "a file where a folder would have to be");
        string blocked = temp.File("blocker/sub/m.safetensors"), missing = temp.File("missing.npy");

        // The images do not exist: an error about them would mean the data was read before the outputs were checked.
        var train = CliRunner.Run("train", "--images", missing, "--labels", missing, "--out", blocked);
        Assert.Equal(1, train.ExitCode);
        Assert.StartsWith($"error: --out '{blocked}': its folder '{temp.File("blocker/sub")}' cannot be created", train.ErrorLine, StringComparison.Ordinal);

        var checkpoint = CliRunner.Run("train", "--images", missing, "--labels", missing, "--out", temp.File("m.safetensors"), "--checkpoint", blocked);
        Assert.Equal(1, checkpoint.ExitCode);
        Assert.StartsWith($"error: --checkpoint '{blocked}':", checkpoint.ErrorLine, StringComparison.Ordinal);

        var folder = CliRunner.Run("train", "--images", missing, "--labels", missing, "--out", temp.Path);
        Assert.Equal($"error: --out '{temp.Path}': '{temp.Path}' is a folder, not a file.", folder.ErrorLine);

        var predict = CliRunner.Run("predict", "--model", temp.File("blocker"), "--input", missing, "--output", blocked);
        Assert.Equal(1, predict.ExitCode);
        Assert.StartsWith($"error: --output '{blocked}':", predict.ErrorLine, StringComparison.Ordinal);

        var bench = CliRunner.Run("bench", "--device", "reference", "--json", blocked);
        Assert.Equal(1, bench.ExitCode);
        Assert.StartsWith($"error: --json '{blocked}':", bench.ErrorLine, StringComparison.Ordinal);
        Assert.False(Directory.EnumerateFiles(temp.Path, "*.tmp", SearchOption.AllDirectories).Any(), "a probe file was left behind");
    }

    [Fact]
    public void No_output_replaces_an_input_or_another_output()
    {
        using var temp = Fixtures.TempFolder();
        ReliabilityTests.WriteQuadrants(temp, 16);
        string model = temp.File("m.safetensors"), images = temp.File("x.npy"), labels = temp.File("y.npy");
        string[] train = ["train", "--arch", Spec, "--images", images, "--labels", labels, "--epochs", "1", "--batch-size", "8", "--device", "reference"];
        Assert.Equal(0, CliRunner.Run([.. train, "--out", model]).ExitCode);
        byte[] before = File.ReadAllBytes(model);

        void Refused(string message, params string[] args)
        {
            var run = CliRunner.Run(args);
            Assert.Equal(2, run.ExitCode);
            Assert.Equal($"error: {message}, which writing it would replace; give another path.", run.ErrorLine);
        }

        Refused($"--output '{model}' is the same file as --model", "predict", "--model", model, "--input", images, "--output", model);
        Refused($"--output '{images}' is the same file as --input", "predict", "--model", model, "--input", images, "--output", images);
        Refused($"--output '{temp.File("./m.safetensors")}' is the same file as --model", "export", "--model", model, "--output", temp.File("./m.safetensors"));
        Refused($"--out '{temp.File("net.png")}' is the same file as --out (its plot)", [.. train, "--out", temp.File("net.png")]);
        Refused($"--out '{model}' is the same file as --checkpoint", [.. train, "--out", model, "--checkpoint", model]);
        Refused($"--out '{labels}' is the same file as --labels", [.. train, "--out", labels]);
        Refused($"--checkpoint '{model}' is the same file as --init", [.. train, "--out", temp.File("n.safetensors"), "--init", model, "--checkpoint", model]);
        Assert.Equal(before, File.ReadAllBytes(model));

        if (!OperatingSystem.IsWindows()) // where links need no privilege
        {
            // Through a symbolic link it is the same file too.
            File.CreateSymbolicLink(temp.File("link.safetensors"), model);
            Refused($"--output '{temp.File("link.safetensors")}' is the same file as --model", "predict", "--model", model, "--input", images, "--output", temp.File("link.safetensors"));
            Directory.CreateSymbolicLink(temp.File("folder"), temp.Path); // and through a linked folder
            Refused($"--output '{temp.File("folder/m.safetensors")}' is the same file as --model", "predict", "--model", model, "--input", images, "--output", temp.File("folder/m.safetensors"));
        }

        // What is meant: fine-tuning into the weights it starts from, and a checkpoint that goes on where it resumed.
        Assert.Equal(0, CliRunner.Run([.. train, "--out", model, "--init", model]).ExitCode);
        Assert.Equal(0, CliRunner.Run([.. train, "--out", temp.File("c.safetensors"), "--checkpoint", temp.File("c.checkpoint.safetensors")]).ExitCode);
        var resumed = CliRunner.Run([.. train.Select(a => a == "1" ? "2" : a), "--out", temp.File("c.safetensors"), "--checkpoint", temp.File("c.checkpoint.safetensors"),
            "--resume", temp.File("c.checkpoint.safetensors")]);
        Assert.True(resumed.ExitCode == 0, resumed.Error);
    }

    [Fact]
    public void The_suite_runs_in_a_culture_that_writes_a_decimal_comma()
    {
        // Support/TestCulture.cs: without it a number formatted in the current culture would pass unnoticed here.
        Assert.SkipWhen(Environment.GetEnvironmentVariable("GPUCNN_TEST_CULTURE") is { Length: > 0 }, "GPUCNN_TEST_CULTURE chose the culture");
        try
        {
            _ = System.Globalization.CultureInfo.GetCultureInfo("de-DE");
        }
        catch (System.Globalization.CultureNotFoundException)
        {
            Assert.Skip(".NET has no culture data here (globalization-invariant mode)");
        }

        Assert.Equal("de-DE", System.Globalization.CultureInfo.CurrentCulture.Name);
        Assert.Equal("1,5", 1.5.ToString(System.Globalization.CultureInfo.CurrentCulture));
    }

    [Fact]
    public void The_command_line_reads_and_prints_numbers_alike_in_every_culture()
    {
        System.Globalization.CultureInfo german;
        try
        {
            german = System.Globalization.CultureInfo.GetCultureInfo("de-DE");
        }
        catch (System.Globalization.CultureNotFoundException)
        {
            german = System.Globalization.CultureInfo.InvariantCulture;
        }

        Assert.SkipWhen(german.NumberFormat.NumberDecimalSeparator != ",", ".NET has no culture data here (globalization-invariant mode)");
        using var temp = Fixtures.TempFolder();
        ReliabilityTests.WriteQuadrants(temp, 16);
        var (culture, uiCulture) = (System.Globalization.CultureInfo.CurrentCulture, System.Globalization.CultureInfo.CurrentUICulture);
        System.Globalization.CultureInfo.CurrentCulture = System.Globalization.CultureInfo.CurrentUICulture = german;
        try
        {
            // In a German culture System.CommandLine had read "1.5" as 15 (the point groups thousands there): the shipped
            // gpucnn runs globalization-invariant, but a host that calls GpuCnnCli.Run in its own culture (these tests) did.
            var run = CliRunner.Run("train", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--epochs", "1",
                "--batch-size", "8", "--momentum", "1.5", "--device", "reference", "--out", temp.File("m.safetensors"));
            Assert.True(run.ExitCode == 0, run.Error);
            Assert.Contains("warning: --momentum 1.5 is ≥ 1", run.Error, StringComparison.Ordinal);
            Assert.Matches(@"accuracy \d{1,3}\.\d\d%", run.Out);
            Assert.StartsWith("error: Unrecognized command or argument '--frobnicate'", CliRunner.Run("train", "--frobnicate").Error, StringComparison.Ordinal);
            Assert.Same(german, System.Globalization.CultureInfo.CurrentCulture); // the caller's culture comes back
        }
        finally
        {
            (System.Globalization.CultureInfo.CurrentCulture, System.Globalization.CultureInfo.CurrentUICulture) = (culture, uiCulture);
        }
    }

    [Fact]
    public void Hyperparameters_that_cannot_be_meant_are_warned_about_by_value()
    {
        using var temp = Fixtures.TempFolder();
        ReliabilityTests.WriteQuadrants(temp, 16);
        var run = CliRunner.Run("train", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--epochs", "1",
            "--batch-size", "8", "--momentum", "1.5", "--device", "reference", "--out", temp.File("m.safetensors"));
        Assert.True(run.ExitCode == 0, run.Error);
        Assert.Contains("warning: --momentum 1.5 is ≥ 1", run.Error, StringComparison.Ordinal);
        var sensible = CliRunner.Run("train", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--epochs", "1",
            "--batch-size", "8", "--device", "reference", "--out", temp.File("m.safetensors"));
        Assert.True(sensible.ExitCode == 0, sensible.Error); // a run that failed would print no warning either
        Assert.DoesNotContain("warning:", sensible.Error, StringComparison.Ordinal);

        // A learning rate that blows the weights up in the first batches (the loss stays finite, so nothing stops the run).
        var diverging = CliRunner.Run("train", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--epochs", "1",
            "--batch-size", "8", "--lr", "100", "--device", "reference", "--out", temp.File("m.safetensors"));
        Assert.True(diverging.ExitCode == 0, diverging.Error);
        Assert.Contains("warning: the mean training loss of the first 2 batches is", diverging.Error, StringComparison.Ordinal);
        Assert.Contains("far above ln(4) = 1.39 for guessing: the weights are diverging; lower --lr (100).", diverging.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Resuming_on_another_device_or_thread_count_says_the_run_will_not_be_bitwise_the_same()
    {
        using var temp = Fixtures.TempFolder();
        ReliabilityTests.WriteQuadrants(temp, 32);
        string[] common = ["train", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--batch-size", "8",
            "--out", temp.File("m.safetensors")];
        string checkpoint = temp.File("c.safetensors");
        Assert.Equal(0, CliRunner.Run([.. common, "--device", "cpu", "--epochs", "1", "--checkpoint", checkpoint]).ExitCode);
        string cpu = $"cpu ({Environment.ProcessorCount} threads, ";
        Assert.StartsWith(cpu, GpuCnn.IO.Safetensors.Read(checkpoint).Metadata["device"], StringComparison.Ordinal);

        var same = CliRunner.Run([.. common, "--device", "cpu", "--epochs", "2", "--resume", checkpoint]);
        Assert.Equal(0, same.ExitCode);
        Assert.DoesNotContain("note: the checkpoint was written on", same.Error, StringComparison.Ordinal);

        // The filter gradient's partial sums follow the thread count, so a resume elsewhere continues but is not bitwise.
        var elsewhere = CliRunner.Run([.. common, "--device", "reference", "--epochs", "2", "--resume", checkpoint]);
        Assert.Equal(0, elsewhere.ExitCode);
        Assert.Contains($"note: the checkpoint was written on {cpu}", elsewhere.Error, StringComparison.Ordinal);
        Assert.Contains("this run uses reference (", elsewhere.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_damaged_or_torn_checkpoint_is_reported_and_never_loaded()
    {
        using var temp = Fixtures.TempFolder();
        ReliabilityTests.WriteQuadrants(temp, 32);
        string[] common = ["train", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--batch-size", "8",
            "--device", "reference", "--out", temp.File("m.safetensors")];
        string checkpoint = temp.File("c.safetensors");
        Assert.Equal(0, CliRunner.Run([.. common, "--epochs", "1", "--checkpoint", checkpoint]).ExitCode);
        common = [.. common, "--epochs", "2"];
        byte[] good = File.ReadAllBytes(checkpoint);

        // One bit of one weight flipped, as a failing disk would.
        byte[] flipped = (byte[])good.Clone();
        flipped[^3] ^= 0x10;
        File.WriteAllBytes(checkpoint, flipped);
        var damaged = CliRunner.Run([.. common, "--resume", checkpoint]);
        Assert.Equal(1, damaged.ExitCode);
        Assert.Contains($"checkpoint '{checkpoint}' is damaged", damaged.ErrorLine, StringComparison.Ordinal);

        // The training position in the metadata changed (the epoch to continue from, by one): the header is covered too.
        byte[] moved = (byte[])good.Clone();
        int at = IndexOf(moved, "\"epoch\":\"") + "\"epoch\":\"".Length;
        moved[at] ^= 1; // '2' ↔ '3'

        File.WriteAllBytes(checkpoint, moved);
        Assert.Contains("is damaged", CliRunner.Run([.. common, "--resume", checkpoint]).ErrorLine, StringComparison.Ordinal);

        // Cut short, as a write that never completed on a file system without atomic renames would leave it.
        File.WriteAllBytes(checkpoint, good[..(good.Length / 2)]);
        var torn = CliRunner.Run([.. common, "--resume", checkpoint]);
        Assert.Equal(1, torn.ExitCode);
        Assert.Contains(checkpoint, torn.ErrorLine, StringComparison.Ordinal);

        File.WriteAllBytes(checkpoint, good);
        Assert.Equal(0, CliRunner.Run([.. common, "--resume", checkpoint]).ExitCode);
    }

    [Fact]
    public void Stale_temporaries_of_a_killed_writer_are_removed_by_the_next_write()
    {
        using var temp = Fixtures.TempFolder();
        using var finished = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        finished.WaitForExit(); // a process id that no longer runs
        string stale = temp.File($".m.npy.{finished.Id}.0123456789abcdef0123456789abcdef.tmp");
        string alive = temp.File($".m.npy.{Environment.ProcessId}.fedcba9876543210fedcba9876543210.tmp");
        File.WriteAllText(stale, "half a file");
        File.WriteAllText(alive, "another writer's file in progress");
        GpuCnn.IO.Npy.Write(temp.File("m.npy"), new Tensor([2], [1f, 2f]));
        Assert.False(File.Exists(stale));
        Assert.True(File.Exists(alive), "a temporary of a running process was deleted");
    }

    /// <summary>
    /// SIGKILL at random moments of a run that checkpoints every epoch (20 trials; writes held 25 ms between the
    /// temporary and the rename, so many kills land inside one): every time, the run resumed from what is on disk (or
    /// started again when no checkpoint was written yet) ends bitwise equal to an uninterrupted run, and leaves no
    /// temporary file behind. Half the kills come at a random fraction of the straight run's time (start-up included),
    /// half within 30 ms of a random epoch's line, when its checkpoint is being written: timed by the clock alone, a
    /// host twice as loaded during the trials as during the straight run had killed every run before its first write.
    /// </summary>
    [Fact]
    public void Sigkill_at_any_moment_leaves_a_checkpoint_that_resumes_bitwise()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS(), "kills a child process; the launcher paths are Unix ones");
        using var temp = Fixtures.TempFolder();
        ReliabilityTests.WriteQuadrants(temp, 96);
        string[] Command(string folder) => ["train", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--device",
            "cpu", "--epochs", "8", "--batch-size", "16", "--seed", "3", "--checkpoint", Path.Combine(folder, "c.safetensors"), "--out",
            Path.Combine(folder, "m.safetensors")];
        var pause = new Dictionary<string, string> { ["GPUCNN_TEST_PAUSE_IN_WRITE_MS"] = "25" };

        Directory.CreateDirectory(temp.File("straight"));
        var timer = Stopwatch.StartNew();
        using (var straight = CliProcess.Start(["env"], Command(temp.File("straight")), pause))
        {
            string errors = straight.StandardError.ReadToEnd();
            straight.WaitForExit();
            Assert.True(straight.ExitCode == 0, errors);
        }

        double runMs = timer.Elapsed.TotalMilliseconds;
        var random = new Random(20261126);
        int killedMidWrite = 0, resumed = 0;
        for (int trial = 0; trial < 20; trial++)
        {
            string folder = temp.File($"trial{trial}");
            Directory.CreateDirectory(folder);
            using (var run = CliProcess.Start(["env"], Command(folder), pause))
            {
                if (trial % 2 == 0)
                {
                    Thread.Sleep(random.Next((int)runMs));
                }
                else
                {
                    // The epoch's line comes before its checkpoint is written: kill inside or around that write.
                    string prefix = $"epoch {random.Next(1, 9)}:";
                    string? line;
                    while ((line = run.StandardOutput.ReadLine()) is not null && !line.StartsWith(prefix, StringComparison.Ordinal))
                    {
                    }

                    Thread.Sleep(random.Next(30));
                }

                run.Kill(entireProcessTree: true);
                run.WaitForExit();
            }

            killedMidWrite += Directory.EnumerateFiles(folder, ".*.tmp").Any() ? 1 : 0;
            bool hasCheckpoint = File.Exists(Path.Combine(folder, "c.safetensors"));
            resumed += hasCheckpoint ? 1 : 0;
            string[] again = hasCheckpoint ? [.. Command(folder), "--resume", Path.Combine(folder, "c.safetensors")] : Command(folder);
            var result = CliRunner.Run(again);
            Assert.True(result.ExitCode == 0, $"trial {trial}: {result.Error}");
            ReliabilityTests.AssertSameWeights(temp.File("straight/m.safetensors"), Path.Combine(folder, "m.safetensors"));
            Assert.False(Directory.EnumerateFiles(folder, ".*.tmp").Any(), $"trial {trial}: a temporary file was left behind");
        }

        TestContext.Current.TestOutputHelper?.WriteLine($"{killedMidWrite} of 20 kills inside a write, {resumed} resumed from a checkpoint");
        Assert.True(killedMidWrite > 0, "no kill landed inside a write; the test did not test that");
        Assert.True(resumed > 0, "no trial resumed from a checkpoint");
    }

    /// <summary>
    /// A full disk, as a file-size limit (RLIMIT_FSIZE via ulimit -f, with SIGXFSZ ignored so the write fails with EFBIG
    /// instead of killing the process): one error naming --checkpoint and the path, the previous checkpoint and model
    /// byte for byte intact, no temporary left.
    /// </summary>
    [Fact]
    public void A_full_disk_ends_the_run_with_the_option_named_and_nothing_previous_lost()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "uses bash's ulimit -f and env --ignore-signal");
        using var temp = Fixtures.TempFolder();
        ReliabilityTests.WriteQuadrants(temp, 32);
        string checkpoint = temp.File("c.safetensors"), model = temp.File("m.safetensors");
        string[] common = ["train", "--arch", Spec, "--images", temp.File("x.npy"), "--labels", temp.File("y.npy"), "--batch-size", "8",
            "--device", "reference", "--checkpoint", checkpoint, "--out", model];
        Assert.Equal(0, CliRunner.Run([.. common, "--epochs", "1"]).ExitCode);
        byte[] previousCheckpoint = File.ReadAllBytes(checkpoint), previousModel = File.ReadAllBytes(model);
        Assert.True(previousCheckpoint.Length > 16 * 1024, "the checkpoint must exceed the 16 KiB limit below");

        // W^X double-maps code through a file that the limit would stop the runtime from sizing: off for this process.
        using var run = CliProcess.Start(["bash", "-c", "ulimit -f 16 && exec env --ignore-signal=XFSZ \"$@\"", "bash"], [.. common, "--epochs", "2"],
            new Dictionary<string, string> { ["DOTNET_EnableWriteXorExecute"] = "0" });
        string errors = run.StandardError.ReadToEnd();
        run.WaitForExit();
        Assert.True(run.ExitCode == 1, $"exit code {run.ExitCode}: {errors}");
        string error = Assert.Single(errors.Split('\n'), l => l.StartsWith("error:", StringComparison.Ordinal));
        Assert.StartsWith($"error: --checkpoint '{checkpoint}' could not be written: File too large. The previous checkpoint there is intact.", error,
            StringComparison.Ordinal);
        Assert.Equal(previousCheckpoint, File.ReadAllBytes(checkpoint));
        Assert.Equal(previousModel, File.ReadAllBytes(model));
        Assert.False(Directory.EnumerateFiles(temp.Path, ".*.tmp").Any(), "a temporary file was left behind");
    }

    private static int IndexOf(byte[] bytes, string text)
    {
        byte[] pattern = System.Text.Encoding.ASCII.GetBytes(text);
        int at = bytes.AsSpan().IndexOf(pattern);
        Assert.True(at >= 0, $"'{text}' not found");
        return at;
    }
}
