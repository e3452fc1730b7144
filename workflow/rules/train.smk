# One interactive SAG training run per mode x variant x s_des x repetition.
# With results_source: download the run directories come from results.smk instead.


if config["results_source"] == "train":

    rule train:
        input:
            # The manifest of the MD5-verified files (not the files: they are the user's).
            # Their content never changes: a re-download must not retrain anything.
            mnist=ancient(MNIST_MANIFEST),
        output:
            # Created atomically by the script. The mid-run checkpoint lives beside it
            # (<run dir>.checkpoint.pt), outside the output, so Snakemake keeps it when a
            # job dies and the rerun resumes from it.
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
            runtime=config["train_resources"]["runtime"],
            # Execution choices, not settings: changing them re-runs nothing.
            device=config["device"],
            jobs_per_gpu=config["jobs_per_gpu"],
            engine=config["engine"],
            matmul_precision=config["matmul_precision"],
            checkpoint_every=config["checkpoint_every"],
        params:
            settings=train_settings,
            # config's mnist_root; not a rerun trigger: moving MNIST retrains nothing.
            data_root=mnist_root,
        shell:
            "python -m askdagger_mnist.cli.train --mode {wildcards.mode} --variant {wildcards.variant}"
            " --s-des {wildcards.s_des} --rep {wildcards.rep} {params.settings}"
            " --data-root {params.data_root:q} --out {output.run:q}"
            " --device {resources.device} --jobs-per-gpu {resources.jobs_per_gpu}"
            " --engine {resources.engine} --threads {threads}"
            " --matmul-precision {resources.matmul_precision}"
            " --checkpoint-every {resources.checkpoint_every} > {log:q} 2>&1"
