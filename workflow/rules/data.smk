# MNIST: downloaded once (MD5-checked) into the configured root, or found there already.


localrules:
    download_mnist,


rule download_mnist:
    output:
        mnist_files(),
    log:
        f"{LOGS}/download_mnist.log",
    benchmark:
        f"{BENCHMARKS}/download_mnist.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        root=lambda wildcards, output: Path(output[0]).parents[2],
        mirrors=mirror_flags(),
    shell:
        "python -m askdagger_mnist.cli.download_mnist --root {params.root:q} {params.mirrors}"
        " > {log:q} 2>&1"
