# One interactive SAG training run per mode x variant x s_des x repetition.
# With results_source: download the run directories come from results.smk instead.
# With runs_per_job N > 1 the job of repetition 0 trains repetitions 0..N-1 in one process, and
# the jobs of 1..N-1 wait for it and restore their runs (experiment/batches.py).


if config["results_source"] == "train":

    rule train:
        input:
            # The manifest of the MD5-verified files (not the files: they are the user's).
            # Their content never changes: a re-download must not retrain anything.
            mnist=ancient(MNIST_MANIFEST),
            # runs_per_job > 1: the run of the job that trains this one with its batch (none
            # for the batch's first repetition, whose job trains them all).
            trained_by=lambda w: trained_by(config, w),
        output:
            # Created atomically by the script. Beside it, outside the output, so that
            # Snakemake never deletes them: the mid-run checkpoint (<run dir>.checkpoint.pt),
            # from which a rerun resumes, and the finished run's kept copy (.kept/<name>), from
            # which a rerun of a finished run restores it without training.
            run=directory(f"{RUNS}/{{mode}}/{{variant}}/s{{s_des}}/rep{{rep}}"),
        log:
            f"{LOGS}/train/{{mode}}/{{variant}}/s{{s_des}}/rep{{rep}}.log",
        benchmark:
            f"{BENCHMARKS}/train/{{mode}}/{{variant}}/s{{s_des}}/rep{{rep}}.tsv"
        conda:
            # device: cuda requires pytorch's CUDA build (envs/train-cuda.yaml)
            f"../../{train_conda_env(config['device'])}"
        threads: config["threads"]
        resources:
            # A whole-job tag: --resources gpu=<GPUs x jobs_per_gpu> lets that many jobs run
            # at once; the script itself places each on a GPU slot (docs/cluster.md).
            gpu=train_gpu_tag(config["train_resources"], config["device"]),
            mem_mb=config["train_resources"]["mem_mb"],
            runtime=lambda w: train_runtime(config, w),
            # Execution choices, not settings: changing them re-runs nothing (resources are no
            # rerun trigger). So is where MNIST lies: moving it retrains nothing.
            device=config["device"],
            jobs_per_gpu=config["jobs_per_gpu"],
            engine=config["engine"],
            cpu_slots="--cpu-slots" if config["cpu_slots"] else "--no-cpu-slots",
            matmul_precision=config["matmul_precision"],
            checkpoint_every=config["checkpoint_every"],
            mnist_root=config["mnist_root"],
            # The next repetitions this job trains too (runs_per_job; 0: its own run only).
            and_next=lambda w: len(batch_reps(config, w)) - 1,
        params:
            # Every setting but mode, s_des and rep (the wildcards pass those).
            settings=lambda w: settings_flags(
                run_settings(config, w.mode, w.variant, w.s_des, w.rep)
            ),
            # Not passed: the script records its own. A parameter so that raising it (a change
            # that alters results, settings.py) re-runs every train job; a rerun of a finished
            # run of today's version restores it from its kept copy (data/kept_runs.py).
            results_version=RESULTS_VERSION,
        shell:
            "python -m askdagger_mnist.cli.train --mode {wildcards.mode:q}"
            " --variant {wildcards.variant:q} --s-des {wildcards.s_des:q} --rep {wildcards.rep:q}"
            " {params.settings} --data-root {resources.mnist_root:q} --out {output.run:q}"
            " --device {resources.device:q} --jobs-per-gpu {resources.jobs_per_gpu:q}"
            " --engine {resources.engine:q} --threads {threads:q} {resources.cpu_slots:q}"
            " --matmul-precision {resources.matmul_precision:q}"
            " --checkpoint-every {resources.checkpoint_every:q} --and-next {resources.and_next:q}"
            " > {log:q} 2>&1"
