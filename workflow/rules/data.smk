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
    resources:
        # Resources, not params: where MNIST lies and where it comes from re-run nothing (a
        # re-run, while the manifest exists, would hide the train jobs behind the ancient()
        # manifest for that invocation, so that a missing run stayed missing).
        mnist_root=config["mnist_root"],
        mirrors=mirror_flags(config),  # each URL quoted
    shell:
        "python -m askdagger_mnist.cli.download_mnist --root {resources.mnist_root:q}"
        " {resources.mirrors} --require train --manifest {output:q} > {log:q} 2>&1"
