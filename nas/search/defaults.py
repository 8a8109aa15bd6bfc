"""The search's defaults and choice lists, in one place: the CLI builds its options from them, the
backends and the dashboard read them. Light on purpose (no Optuna import): ``mbnas --help`` stays instant."""

from __future__ import annotations

DEFAULT_STORAGE = "sqlite:///runs/mbnas.db"
DEFAULT_SPACE = "demo"
DEFAULT_STRATEGY = "progressive"
DEFAULT_OBJECTIVE = "mlm"  # one of nas.distill.settings.OBJECTIVES
DEFAULT_PROFILE = "pixel4-cpu-tflite"
DEFAULT_TRIALS = 12
BACKENDS = ("optuna", "ray")
SAMPLERS = ("tpe", "nsga2", "gp", "random")
DEFAULT_SAMPLER = "gp"
GP_STARTUP_TRIALS = 2  # chosen on seeds 0-15 of benchmarks/search_efficiency.py (2: 7 / 10.5, 3: 8.5 / 11 trials)
SAMPLER_HELP = (
    f"gp (default): Gaussian-process Bayesian optimisation (expected hypervolume improvement) from "
    f"{GP_STARTUP_TRIALS} random start-up trials on; other workers' running trials enter its batch "
    f"acquisition, so parallel workers spread out; it learns only from trained trials, so TPE proposes the "
    f"trial after a rejected, stopped or failed one, and every trial once one is over the latency budget; "
    f"about a second per proposal. tpe: Parzen estimators, 4 random start-up trials, learns from rejected "
    f"trials, keeps parallel workers apart with a constant liar; nsga2: a genetic algorithm that stays "
    f"random for its whole first population (50); random: the baseline"
)
