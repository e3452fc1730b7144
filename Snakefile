# askdagger-mnist: the MNIST experiments of S-Aware Gating (ASkDAgger, Luijkx et al., TMLR 2025).
#
#   MNIST  --download_mnist-->  {mnist_root}/MNIST/raw/*.gz, verified: results/mnist.verified.json
#          --train (630 jobs)-->  results/runs/{mode}/{variant}/s{s_des}/rep{rep}/
#          --aggregate------->  results/metrics/[{group}/]{runs.csv,curves.csv.gz}
#          --plot_*---------->  figures/*.pdf, results/tables/*.{csv,md,tex}
#   with compare_with: archives --import_comparison--> results/compare/{name}/
#          --reproduction_verdict, plot_reproduction-->  results/reproduction/verdict.{csv,md},
#                                                        figures/reproduction.pdf
#
# Usage and every config key: docs/workflow.md and config.yaml.

import sys

from snakemake.utils import min_version

min_version("9.0")

# This checkout's package first: its standard-library modules (config, naming, settings)
# check the config and name the runs here, also when the package is not installed.
sys.path.insert(0, os.path.join(workflow.basedir, "src"))

from askdagger_mnist.experiment.config import check_or_exit
from askdagger_mnist.settings import MODES


configfile: os.path.join(workflow.basedir, "config.yaml")


# Types restored, defaults filled in, cross-checked: a bad value stops here in one sentence.
check_or_exit(
    config,
    os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml"),
    configfiles=workflow.configfiles,
)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    mode=wildcard_alternatives(MODES),
    variant=wildcard_alternatives(config["variants"]),
    s_des=wildcard_alternatives(fmt_s(s) for s in config["s_des"]),
    rep=REP_NUMBER_PATTERN,
    group=wildcard_alternatives(FIGURE_GROUPS),
    ablation=wildcard_alternatives(ABLATIONS),


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/results.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/reproduction.smk"


localrules:
    all,


rule all:
    default_target: True
    input:
        final_targets(config),
