# MNIST: the configured root checked (MD5) and completed, never emptied.
#
# The output is a manifest in the workflow's own tree (results/mnist.verified.json: the
# verified files, sizes and MD5s), never the user's files, so Snakemake never deletes a file
# under mnist_root (it removes a job's declared outputs before running it). The script only
# adds what is missing (complete and MD5-checked, or nothing), needs only the training files
# (a read-only root without the t10k test set works) and leaves a corrupt file in place, named.


localrules:
    download_mnist,


rule download_mnist:
    output:
        MNIST_MANIFEST,
    log:
        f"{LOGS}/download_mnist.log",
    benchmark:
        f"{BENCHMARKS}/download_mnist.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        # Derived params (functions of output): not rerun triggers, see common.smk, mnist_root.
        root=mnist_root,
        mirrors=lambda wildcards, output: mirror_flags(config),
    shell:
        "python -m askdagger_mnist.cli.download_mnist --root {params.root:q} {params.mirrors}"
        " --require train --manifest {output:q} > {log:q} 2>&1"
