using GpuCnn.Cpu.Fast;

namespace GpuCnn.Tests;

/// <summary>
/// How the CPU backend's thread team hands out a job's parts: fixed by part number where per-worker partial sums must
/// combine in the same order every run, claimed by whichever worker is free where a part's result does not depend on
/// the worker.
/// </summary>
public sealed class CpuWorkersTests
{
    [Fact]
    public void Parts_any_worker_may_run_go_to_the_free_worker_while_another_is_held_up()
    {
        using var workers = new CpuWorkers(2, SimdWidth.Scalar);
        var job = new FirstPartWaits(parts: 9, anyWorker: true);
        workers.Run(job, 9);

        // The worker holding part 0 waited for all the others; only the other worker can have run them.
        Assert.True(job.OthersFinishedFirst, "part 0 waited 10 s and the other parts were not all done");
        Assert.All(job.Workers.Skip(1), worker => Assert.NotEqual(job.Workers[0], worker));
    }

    [Fact]
    public void Parts_with_per_worker_sums_keep_their_fixed_worker()
    {
        using var workers = new CpuWorkers(3, SimdWidth.Scalar);
        var job = new FirstPartWaits(parts: 10, anyWorker: false, waitFor: TimeSpan.FromMilliseconds(200));
        workers.Run(job, 10);

        // Part p on worker p mod 3, however long part 0 took.
        Assert.False(job.OthersFinishedFirst);
        Assert.Equal(Enumerable.Range(0, 10).Select(p => p % 3), job.Workers);
    }

    [Fact]
    public void Every_part_runs_once_and_only_while_its_job_runs_however_the_workers_are_delayed()
    {
        // Claimed and static jobs in turn, parts that sometimes sleep (a descheduled worker), workers that sometimes
        // wake late: no part may be skipped, run twice, run after Run returned, or (static) run on another worker.
        var jobs = new List<CountingJob>();
        using (var workers = new CpuWorkers(3, SimdWidth.Scalar))
        {
            var random = new Random(7);
            for (int round = 0; round < 1500; round++)
            {
                var job = new CountingJob(random.Next(1, 13), anyWorker: round % 3 != 0, sleepEvery: random.Next(5, 40), random.Next());
                jobs.Add(job);
                workers.Run(job, job.Parts);
                job.Finished = true;
                if (round % 100 == 0)
                {
                    Thread.Sleep(2); // the workers block (past their 0.5 ms of spinning) and must wake for the next job
                }
            }
        }

        // Checked once the team has stopped, so that a part run late by a worker is seen.
        for (int round = 0; round < jobs.Count; round++)
        {
            Assert.True(jobs[round].Runs.All(runs => runs == 1), $"round {round}: parts ran {string.Join(",", jobs[round].Runs)} times");
            Assert.False(jobs[round].RanAfterFinish, $"round {round}: a part ran after Run returned");
            Assert.False(jobs[round].RanOnWrongWorker, $"round {round}: a static part ran on another worker");
        }
    }

    [Theory]
    [InlineData(0)] // the caller's first claim
    [InlineData(5)] // most likely a worker's
    public void A_part_that_throws_fails_its_job_and_the_next_job_runs_whole(int throwing)
    {
        using var workers = new CpuWorkers(2, SimdWidth.Scalar);
        var failing = new ThrowingJob(throwing);
        var error = Assert.Throws<InvalidOperationException>(() => workers.Run(failing, 8));
        Assert.Equal($"part {throwing} failed", error.Message);

        var next = new CountingJob(8, anyWorker: true, sleepEvery: 3, seed: 1);
        workers.Run(next, next.Parts);
        Assert.All(next.Runs, runs => Assert.Equal(1, runs));
    }

    [Fact]
    public void Every_workers_scratch_is_grown_before_images_are_handed_out()
    {
        // Images go to whichever worker is free, so a worker may run its first image of a layer at any call; its scratch
        // must already hold what an image needs, or the backend's memory keeps growing (and allocating) mid-training.
        using var backend = new CpuBackend(threads: 3, Simd.Best);
        var one = new Conv2dGeometry(N: 1, C: 8, H: 20, W: 20, K: 8, R: 3, S: 3, PadH: 1, PadW: 1);
        var six = one with { N = 6 };
        using var w = backend.Upload<float>(one.WeightShape, new float[one.WeightSize]);
        using var x1 = backend.Upload<float>(one.InputShape, new float[one.InputSize]);
        using var y1 = backend.Allocate<float>(one.OutputShape);
        using var x6 = backend.Upload<float>(six.InputShape, new float[six.InputSize]);
        using var y6 = backend.Allocate<float>(six.OutputShape);

        backend.Conv2dForward(one, x1, w, null, y1); // one image: only the calling thread runs it
        long afterOne = backend.BytesAllocated;
        for (int i = 0; i < 5; i++)
        {
            backend.Conv2dForward(six, x6, w, null, y6); // six images over three workers
        }

        Assert.Equal(afterOne, backend.BytesAllocated);
    }

    private sealed class ThrowingJob(int throwing) : IParallelJob
    {
        public bool AnyWorker => true;

        public void Run(int part, int worker)
        {
            if (part == throwing)
            {
                throw new InvalidOperationException($"part {part} failed");
            }
        }
    }

    private sealed class CountingJob(int parts, bool anyWorker, int sleepEvery, int seed) : IParallelJob
    {
        private readonly int[] _runs = new int[parts];

        public int Parts => parts;

        public bool AnyWorker => anyWorker;

        public int[] Runs => _runs;

        public volatile bool Finished;

        public bool RanAfterFinish { get; private set; }

        public bool RanOnWrongWorker { get; private set; }

        public void Run(int part, int worker)
        {
            if (Finished)
            {
                RanAfterFinish = true;
            }

            if (!anyWorker && worker != part % 3)
            {
                RanOnWrongWorker = true;
            }

            Interlocked.Increment(ref _runs[part]);
            if ((part + seed) % sleepEvery == 0)
            {
                Thread.Sleep(1);
            }
            else
            {
                Thread.SpinWait(50 * ((part + seed) % 7));
            }

            if (Finished)
            {
                RanAfterFinish = true;
            }
        }
    }

    /// <summary>Records which worker ran each part; part 0 waits until every other part is done (or a time limit).</summary>
    private sealed class FirstPartWaits(int parts, bool anyWorker, TimeSpan? waitFor = null) : IParallelJob
    {
        private int _done;

        public bool AnyWorker => anyWorker;

        public int[] Workers { get; } = new int[parts];

        public bool OthersFinishedFirst { get; private set; }

        public void Run(int part, int worker)
        {
            Workers[part] = worker;
            if (part == 0)
            {
                OthersFinishedFirst = SpinWait.SpinUntil(() => Volatile.Read(ref _done) == parts - 1, waitFor ?? TimeSpan.FromSeconds(10));
                return;
            }

            Interlocked.Increment(ref _done);
        }
    }
}
