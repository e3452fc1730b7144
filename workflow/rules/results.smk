# Prebuilt results (docs/prebuilt-results.md).
#
# results_source: download  ->  no train rule exists; every run directory comes from archives:
#   fetch_archive   url | gdrive:<id> | file://  ->  resources/archives/{name}.zip (verified)
#   import_archive  the zip  ->  results/imported/{name}/{mode}/{variant}/s{s_des}/rep{rep}/
#   check_imports   every configured run the archives hold is the run the config asks for
#                   (settings, steps, results version, arrays), or nothing is imported
#   import_run      the first archive (in config order) that has the run -> results/runs/...
# compare_with archives are fetched the same way (reproduction.smk).
# Always available: `snakemake --cores 1 results/bundle.zip` packs the configured runs (and
# the aggregated metrics) into a bundle that others can list as a `format: bundle` archive.
#
# On failure each rule also prints the last lines of its log (its `error: ...` sentence).

import json

from askdagger_mnist.experiment.flags import config_flag
from askdagger_mnist.experiment.grid import SWEEP_CONFIG_KEYS
from askdagger_mnist.experiment.run_settings import RUN_CONFIG_KEYS

ARCHIVES = {a["name"]: a for a in config["results_archives"]}
# What check_imports found: each configured run's archive and the steps of it used.
IMPORTS_CHECKED = "results/imported.checked.json"
_SHOW_LOG_ON_ERROR = "|| {{ tail -n 3 {log:q} >&2; exit 1; }}"


localrules:
    bundle,


# Archives are fetched and imported for results_source: download, and for compare_with
# (reproduction.smk imports those into a tree of their own, results/compare/{name}).
if config["results_source"] == "download" or config["compare_with"]:

    # Downloads and imports stay on the machine that runs Snakemake (under the SLURM profile
    # too): compute nodes often cannot reach the internet, and an import is seconds of work.
    localrules:
        fetch_archive,
        import_archive,

    rule fetch_archive:
        output:
            f"{ARCHIVE_DIR}/{{name}}.zip",
        log:
            f"{LOGS}/fetch_archive/{{name}}.log",
        benchmark:
            f"{BENCHMARKS}/fetch_archive/{{name}}.tsv"
        wildcard_constraints:
            name=wildcard_alternatives(ARCHIVES),
        conda:
            "../../envs/results.yaml"
        resources:
            # A resource, not a param (resources are no rerun trigger; a derived param is one
            # on Snakemake 9.0.1): raising the limit re-downloads nothing. A string, so that no
            # scheduler counts it as a numeric resource.
            max_mib=str(config["max_download_mib"]),
        params:
            url=lambda wildcards: results_archive(config, wildcards.name)["url"],
            # Without a configured sha256 the computed one is logged and the structure checked.
            sha256=lambda wildcards: (
                f"--sha256 {shlex.quote(results_archive(config, wildcards.name)['sha256'])}"
                if results_archive(config, wildcards.name).get("sha256")
                else ""
            ),
            format=lambda wildcards: results_archive(config, wildcards.name)["format"],
        shell:
            "python -m askdagger_mnist.cli.fetch_results download --url {params.url:q}"
            " {params.sha256} --format {params.format:q}"
            " --max-mib {resources.max_mib:q} --out {output:q} > {log:q} 2>&1 "
            + _SHOW_LOG_ON_ERROR

    rule import_archive:
        input:
            archive=f"{ARCHIVE_DIR}/{{name}}.zip",
        output:
            staging=directory(f"{IMPORTED}/{{name}}"),
        log:
            f"{LOGS}/import_archive/{{name}}.log",
        benchmark:
            f"{BENCHMARKS}/import_archive/{{name}}.tsv"
        wildcard_constraints:
            name=wildcard_alternatives(ARCHIVES),
        conda:
            "../../envs/results.yaml"
        params:
            url=lambda wildcards: results_archive(config, wildcards.name)["url"],
            format=lambda wildcards: results_archive(config, wildcards.name)["format"],
            # authors' runs: mapped to a variant by (p_rand, normalization, imputation) and
            # kept only with the configured batch size and update interval
            variants=json.dumps(config["variants"], sort_keys=True),
            filters=f"--batch-size {config['batch_size']} --update-every {config['update_every']}",
        shell:
            "python -m askdagger_mnist.cli.fetch_results import --archive {input.archive:q}"
            " --format {params.format:q} --url {params.url:q} --variants {params.variants:q}"
            " {params.filters} --out {output.staging:q} > {log:q} 2>&1 "
            + _SHOW_LOG_ON_ERROR


if config["results_source"] == "download":

    localrules:
        check_imports,
        import_run,

    # never from a compare_with archive: that is the other side of a verdict
    OWN_STAGINGS = [
        f"{IMPORTED}/{name}"
        for name in ARCHIVES
        if name not in config["compare_with"]
    ]

    # Before any run is copied, every configured run the archives hold is checked against the
    # run the config asks for (prebuilt/served.py): one that differs stops the workflow here,
    # with results/runs untouched. Where only a longer run's first steps are used, it says so on
    # the terminal (its stdout) and in its log.
    rule check_imports:
        input:
            staging=OWN_STAGINGS,
        output:
            IMPORTS_CHECKED,
        log:
            f"{LOGS}/check_imports.log",
        benchmark:
            f"{BENCHMARKS}/check_imports.tsv"
        conda:
            "../../envs/results.yaml"
        params:
            config=config_flag(config, (*RUN_CONFIG_KEYS, *SWEEP_CONFIG_KEYS)),
        shell:
            "python -m askdagger_mnist.cli.fetch_results check"
            " --staging {input.staging:q} {params.config} --out {output:q} 2> {log:q} "
            + _SHOW_LOG_ON_ERROR

    rule import_run:
        input:
            staging=OWN_STAGINGS,
            # its order, not its time: a check that passes again re-imports nothing
            checked=ancient(IMPORTS_CHECKED),
        output:
            run=directory(f"{RUNS}/{{mode}}/{{variant}}/s{{s_des}}/rep{{rep}}"),
        log:
            f"{LOGS}/import_run/{{mode}}/{{variant}}/s{{s_des}}/rep{{rep}}.log",
        benchmark:
            f"{BENCHMARKS}/import_run/{{mode}}/{{variant}}/s{{s_des}}/rep{{rep}}.tsv"
        conda:
            "../../envs/results.yaml"
        params:
            # the run is checked again, and cut to the config's steps (prebuilt/served.py)
            config=config_flag(config, RUN_CONFIG_KEYS),
        shell:
            "python -m askdagger_mnist.cli.fetch_results pick --staging {input.staging:q}"
            " --mode {wildcards.mode:q} --variant {wildcards.variant:q}"
            " --s-des {wildcards.s_des:q} --rep {wildcards.rep:q}"
            " {params.config} --out {output.run:q} > {log:q} 2>&1 "
            + _SHOW_LOG_ON_ERROR


rule bundle:
    input:
        runs=all_runs(config),
        metrics=[f"{METRICS}/runs.csv", f"{METRICS}/curves.csv.gz"],
    output:
        "results/bundle.zip",
    log:
        f"{LOGS}/bundle.log",
    benchmark:
        f"{BENCHMARKS}/bundle.tsv"
    conda:
        "../../envs/results.yaml"
    params:
        runs=lambda wildcards, input: Path(input.runs[0]).parents[3],
        metrics=lambda wildcards, input: Path(input.metrics[0]).parent,
    shell:
        "python -m askdagger_mnist.cli.fetch_results pack --runs {params.runs:q} --select {input.runs:q}"
        " --metrics {params.metrics:q} --out {output:q} > {log:q} 2>&1 "
        + _SHOW_LOG_ON_ERROR
