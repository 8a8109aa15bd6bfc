"""A declarative, validated search space over the MobileBERT design.

A space file is YAML (``yaml.safe_load`` only)::

    name: demo
    description: CPU-scale space ...
    fixed:                  # set by the teacher: equal for every candidate and for the teacher
      num_layers: 4
      hidden_size: 128      # inter-block width (the transferred feature map)
      embedding_size: 64
      num_heads: 4
      vocab_size: 30522     # = the lines of the vocabulary below
      seq_len: 64
      trigram_input: true   # optional (the default): MobileBERT's 3-gram embedding; false: BERT's plain one
    vocab: bert-uncased     # optional (this is the default): bert-uncased, news-wiki-4k or a vocab.txt path
    teacher:                # the IB-BERT teacher's own block (attention: block = Q/K/V from the block input)
      intra_size: 256
      num_ffn: 1
      intermediate_size: 1024
      norm: layer_norm
      act: gelu
      attention: block
    search:                 # each dimension: {choices: [...]} or {low, high, step}
      intra_size: {choices: [32, 64, 96, 128]}
      num_ffn: {choices: [1, 2, 3, 4]}
      mha_ffn_ratio: {low: 0.1, high: 1.0, step: 0.05}
      norm: {choices: [layer_norm, no_norm]}
      act: {choices: [gelu, relu]}
      attention: {choices: [shared_qk, bottleneck]}
    ffn_multiple: 32        # FFN inner width is rounded to a multiple of this (hardware-friendly)
    constraints:            # optional
      mha_ffn_ratio: {min: 0.1, max: 1.5}   # window on the *realised* ratio
      max_params_m: 10.0
    budget:                 # optional: how much training each candidate and the teacher get
      distill: {layer_steps: 60, pd_steps: 150, batch_size: 32, eval_batches: 20}
      teacher: {steps: 5000, batch_size: 64, lr: 0.003, warmup: 200}
      # teacher.masking (optional; default BERT's 15% token by token): {rate, mean_span, max_span},
      # the teacher's masked-LM targets and those of its students' transfer and held-out scores

The budget belongs to the file, not to the space's name: a copy of a built-in space trains as the
built-in does, and a file without one gets the defaults (``DistillSettings``, ``DEFAULT_RECIPE``).

The MHA/FFN ratio is searched; the FFN inner width is derived from it:
``intermediate = round((mha_params / ratio / num_ffn - intra) / (2 * intra + 1), ffn_multiple)``,
i.e. the width that makes the stacked FFNs hold ``mha_params / ratio`` parameters.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

import yaml

from search_spaces.candidate import ACTIVATIONS, ATTENTIONS, NORMS, Candidate, round_to_multiple
from search_spaces.errors import UserError
from search_spaces.files import builtin_names, builtin_or_file, read_user_text
from search_spaces.masking import Masking, masking_from
from search_spaces.ops import count, mha_params_per_block
from search_spaces.vocab import BERT_VOCAB, VOCABS, vocab_size_of

BUILTIN_DIR = Path(__file__).parent / "builtin"

FIXED_FIELDS = ("num_layers", "hidden_size", "embedding_size", "num_heads", "vocab_size", "seq_len")
FIXED_FLAGS = ("trigram_input",)  # optional booleans of ``fixed`` (Candidate's default when absent)
TEACHER_FIELDS = ("intra_size", "num_ffn", "intermediate_size", "norm", "act", "attention")
SEARCH_FIELDS = ("intra_size", "num_ffn", "mha_ffn_ratio", "norm", "act", "attention")
TOP_FIELDS = ("name", "description", "fixed", "vocab", "teacher", "search", "ffn_multiple", "constraints", "budget")
# budget.distill: the DistillSettings fields that size one candidate's training and scoring
# budget.teacher: the TeacherRecipe fields (nas.teacher) of the teacher's pre-training
DISTILL_BUDGET_INTS = ("layer_steps", "pd_steps", "batch_size", "transfer_batches", "eval_batches",
                       "downstream_steps", "downstream_eval")
DISTILL_BUDGET_RATES = ("lr", "downstream_lr", "warmup")
TEACHER_BUDGET_INTS = ("steps", "batch_size", "warmup", "eval_batches")
TEACHER_BUDGET_RATES = ("lr", "weight_decay")
TEACHER_BUDGET_CHOICES = {"precision": ("auto", "fp32", "bf16")}  # nas.device.PRECISIONS
CONSTRAINT_FIELDS = ("mha_ffn_ratio", "max_params_m", "max_gflops")
_CATEGORICAL = {"norm": NORMS, "act": ACTIVATIONS, "attention": ("shared_qk", "bottleneck")}


class Suggester(Protocol):
    """What a space needs from a sampler: an ``optuna.Trial`` satisfies it, so does ``RandomSuggester``."""

    def suggest_categorical(self, name: str, choices: list) -> Any: ...

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float: ...


class RandomSuggester:
    """Uniform sampling with a seeded RNG, for ``mbnas space sample`` and random baselines."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)

    def suggest_categorical(self, name: str, choices: list) -> Any:
        return self.rng.choice(list(choices))

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float:
        if step:
            n = int(round((high - low) / step))
            return round(low + step * self.rng.randint(0, n), 10)
        return self.rng.uniform(low, high)


@dataclass(frozen=True)
class Dimension:
    """One searched dimension: categorical ``choices`` or a float range ``low..high`` by ``step``."""

    name: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None

    def suggest(self, s: Suggester) -> Any:
        if self.choices is not None:
            return s.suggest_categorical(self.name, list(self.choices))
        return s.suggest_float(self.name, self.low, self.high, step=self.step)

    def values(self) -> list:
        """Every value (grid for ranges), for validation and the dashboard's axes."""
        if self.choices is not None:
            return list(self.choices)
        n = int(round((self.high - self.low) / self.step)) if self.step else 1
        return [round(self.low + i * self.step, 10) for i in range(n + 1)] if self.step else [self.low, self.high]


@dataclass(frozen=True)
class Constraints:
    mha_ffn_ratio: tuple[float, float] | None = None  # window on the realised ratio
    max_params_m: float | None = None
    max_gflops: float | None = None

    def violations(self, c: Candidate) -> list[str]:
        k = count(c)
        out = []
        if self.mha_ffn_ratio and not (self.mha_ffn_ratio[0] <= k.mha_ffn_ratio <= self.mha_ffn_ratio[1]):
            out.append(f"realised MHA/FFN ratio {k.mha_ffn_ratio:.3f} outside {list(self.mha_ffn_ratio)}")
        if self.max_params_m is not None and k.params_m > self.max_params_m:
            out.append(f"{k.params_m:.2f}M parameters > max_params_m {self.max_params_m}")
        if self.max_gflops is not None and k.gflops > self.max_gflops:
            out.append(f"{k.gflops:.2f} GFLOPs > max_gflops {self.max_gflops}")
        return out

    def __str__(self) -> str:
        """``max_params_m <= 40.0``, ...; ``none`` when nothing is constrained."""
        parts = []
        if self.mha_ffn_ratio:
            parts.append(f"{self.mha_ffn_ratio[0]:g} <= realised MHA/FFN ratio <= {self.mha_ffn_ratio[1]:g}")
        if self.max_params_m is not None:
            parts.append(f"params <= {self.max_params_m:g}M")
        if self.max_gflops is not None:
            parts.append(f"GFLOPs <= {self.max_gflops:g}")
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class SearchSpace:
    name: str
    description: str
    fixed: dict[str, Any]  # FIXED_FIELDS (ints) and any FIXED_FLAGS the file sets
    teacher_block: dict[str, Any]
    dimensions: tuple[Dimension, ...]
    ffn_multiple: int = 32
    constraints: Constraints = field(default_factory=Constraints)
    source: str = "<builtin>"
    distill_budget: dict[str, Any] = field(default_factory=dict)  # DistillSettings fields (budget.distill)
    teacher_budget: dict[str, Any] = field(default_factory=dict)  # TeacherRecipe fields (budget.teacher)
    vocab: str = BERT_VOCAB  # a built-in vocabulary's name (search_spaces.vocab.VOCABS) or a vocab.txt's absolute path

    # ----------------------------------------------------------------------------------------
    @property
    def teacher(self) -> Candidate:
        return Candidate(**self.fixed, **self.teacher_block, name=f"{self.name}-teacher")

    @property
    def masking(self) -> Masking:
        """The masking its teacher is pre-trained with (``budget.teacher.masking``, else BERT's); the
        budget keeps it as a plain mapping, since a study records the budget as JSON."""
        return masking_from(self.teacher_budget.get("masking"))

    @property
    def ref(self) -> str:
        """What ``--space`` takes to name this space again: a built-in's name, else its file."""
        return self.name if Path(self.source).parent == BUILTIN_DIR else self.source

    def dimension(self, name: str) -> Dimension:
        return next(d for d in self.dimensions if d.name == name)

    @property
    def size(self) -> int:
        """Distinct combinations of the searched values (ranges on their step grid)."""
        return math.prod(len(d.values()) for d in self.dimensions)

    def build(self, intra_size: int, num_ffn: int, mha_ffn_ratio: float, norm: str, act: str,
              attention: str) -> Candidate:
        """A candidate from searched values; the FFN inner width is derived from the target ratio."""
        probe = Candidate(**self.fixed, intra_size=intra_size, num_ffn=num_ffn, intermediate_size=self.ffn_multiple,
                          norm=norm, act=act, attention=attention)
        mha = mha_params_per_block(probe)
        # FFN params = num_ffn * (intra*I + I + I*intra + intra)  =>  solve for I
        inter = (mha / mha_ffn_ratio / num_ffn - intra_size) / (2 * intra_size + 1)
        return probe.replace(intermediate_size=round_to_multiple(inter, self.ffn_multiple),
                             mha_ffn_ratio=float(mha_ffn_ratio))

    def suggest(self, s: Suggester) -> Candidate:
        """Sample one candidate through ``s`` (an Optuna trial or ``RandomSuggester``)."""
        values = {d.name: d.suggest(s) for d in self.dimensions}
        return self.build(**values)

    def sample(self, n: int, seed: int | None = None, max_tries: int = 1000) -> list[Candidate]:
        """``n`` distinct random candidates that satisfy the constraints."""
        rng, out, seen = RandomSuggester(seed), [], set()
        for _ in range(max_tries * max(1, n)):
            c = self.suggest(rng)
            if c not in seen and not self.constraints.violations(c):
                seen.add(c)
                out.append(c)
                if len(out) == n:
                    return out
        raise UserError(f"space '{self.name}': could only sample {len(out)} of {n} candidates that satisfy its "
                        f"constraints; widen the search ranges or loosen the constraints")

    def outside(self, c: Candidate) -> list[str]:
        """How ``c`` lies outside what this space searches (empty: a candidate the search could
        propose). The FFN width is derived from the sampled ratio, so it is judged by the
        space's constraints (the realised-ratio window among them), not by the ratio grid."""
        out = []
        for d in self.dimensions:
            if d.name == "mha_ffn_ratio" or not hasattr(c, d.name):
                continue
            v, allowed = getattr(c, d.name), d.values()
            inside = v in allowed if d.choices is not None else d.low <= v <= d.high
            if not inside:
                where = allowed if d.choices is not None else f"{d.low:g}..{d.high:g}"
                out.append(f"{d.name} {v} is not among the space's values {where}")
        return out + self.constraints.violations(c)

    def contains_teacher_shape(self, c: Candidate) -> bool:
        return all(getattr(c, k) == v for k, v in self.fixed.items())

    def to_dict(self) -> dict[str, Any]:
        dims = {}
        for d in self.dimensions:
            dims[d.name] = {"choices": list(d.choices)} if d.choices is not None else \
                {"low": d.low, "high": d.high, "step": d.step}
        cons: dict[str, Any] = {}
        if self.constraints.mha_ffn_ratio:
            cons["mha_ffn_ratio"] = {"min": self.constraints.mha_ffn_ratio[0], "max": self.constraints.mha_ffn_ratio[1]}
        if self.constraints.max_params_m is not None:
            cons["max_params_m"] = self.constraints.max_params_m
        if self.constraints.max_gflops is not None:
            cons["max_gflops"] = self.constraints.max_gflops
        out = {"name": self.name, "description": self.description, "fixed": dict(self.fixed),
               "teacher": dict(self.teacher_block), "search": dims, "ffn_multiple": self.ffn_multiple,
               "constraints": cons}
        if self.vocab != BERT_VOCAB:  # only when set: studies made before vocabularies were choosable resume
            out["vocab"] = self.vocab
        # always written, empty parts meaning the defaults: a study keeps this dict, and one without a
        # 'budget' is then surely from before budgets lived in space files (nas.search.study._space_diff)
        out["budget"] = {"distill": dict(self.distill_budget), "teacher": dict(self.teacher_budget)}
        return out


# ------------------------------------------------------------------------------------------------
# loading and validation: every problem is one line naming the file, the field and what is allowed
def builtin_spaces() -> list[str]:
    return builtin_names(BUILTIN_DIR, ".yaml")


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A built-in space by name, or a YAML file."""
    p = builtin_or_file(name_or_path, BUILTIN_DIR, ".yaml", "space")
    try:
        raw = yaml.safe_load(read_user_text(p))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        if getattr(exc, "context", None) == "while scanning a simple key":
            # a key without its ':' is only noticed on the next line; the context mark is the key's own
            mark = getattr(exc, "context_mark", None) or mark
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{p}:{where} malformed YAML ({getattr(exc, 'problem', None) or exc})") from None
    return parse_space(raw, source=str(p))


def _err(source: str, field_: str, msg: str) -> UserError:
    return UserError(f"{source}: field '{field_}': {msg}")


def _int(source: str, where: str, v: Any, low: int = 1) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise _err(source, where, f"must be an integer, got {type(v).__name__} {v!r}")
    if v < low:
        raise _err(source, where, f"must be >= {low}, got {v}")
    return v


def _num(source: str, where: str, v: Any) -> float:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise _err(source, where, f"must be a number, got {type(v).__name__} {v!r}")
    return float(v)


def _mapping(source: str, where: str, v: Any, allowed: Iterable[str], required: Iterable[str] = ()) -> dict:
    if not isinstance(v, dict):
        raise _err(source, where, f"must be a mapping, got {type(v).__name__}")
    allowed = tuple(allowed)
    for k in v:
        if k not in allowed:
            raise _err(source, f"{where}.{k}" if where else k, f"unknown field; allowed: {', '.join(allowed)}")
    for k in required:
        if k not in v:
            raise _err(source, f"{where}.{k}" if where else k, "is required")
    return v


def _dimension(source: str, name: str, spec: Any) -> Dimension:
    where = f"search.{name}"
    spec = _mapping(source, where, spec, ("choices", "low", "high", "step"))
    if "choices" in spec:
        if set(spec) - {"choices"}:
            raise _err(source, where, "give either 'choices' or 'low'/'high'/'step', not both")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise _err(source, f"{where}.choices", "must be a non-empty list")
        if len(set(map(str, choices))) != len(choices):
            raise _err(source, f"{where}.choices", "has duplicate values")
        if name in _CATEGORICAL:
            for v in choices:
                if v not in _CATEGORICAL[name]:
                    raise _err(source, f"{where}.choices", f"{v!r} is not allowed; allowed: {list(_CATEGORICAL[name])}")
        elif name == "mha_ffn_ratio":
            for v in choices:
                if _num(source, f"{where}.choices", v) <= 0:
                    raise _err(source, f"{where}.choices", f"ratios must be > 0, got {v}")
        else:
            for v in choices:
                _int(source, f"{where}.choices", v)
        return Dimension(name, choices=tuple(choices))
    if name != "mha_ffn_ratio":
        raise _err(source, where, "must be given as 'choices' (only mha_ffn_ratio may be a low/high range)")
    missing = [k for k in ("low", "high") if k not in spec]
    if missing:
        raise _err(source, f"{where}.{missing[0]}", "is required (or give 'choices')")
    low, high = _num(source, f"{where}.low", spec["low"]), _num(source, f"{where}.high", spec["high"])
    if low <= 0:
        raise _err(source, f"{where}.low", f"must be > 0, got {low}")
    if high < low:
        raise _err(source, where, f"low {low} is above high {high}")
    if "step" not in spec:  # a continuous range has no finite grid: the space's size and its exhaustion need one
        raise _err(source, f"{where}.step", "is required for a low/high range (e.g. 0.05)")
    step = _num(source, f"{where}.step", spec["step"])
    if step is not None and step <= 0:
        raise _err(source, f"{where}.step", f"must be > 0, got {step}")
    return Dimension(name, low=low, high=high, step=step)


def _budget(source: str, raw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``budget.distill`` and ``budget.teacher``, checked here so a bad value names the file."""
    if raw is None:
        return {}, {}
    raw = _mapping(source, "budget", raw, ("distill", "teacher"))
    out = []
    for part, ints, rates in (("distill", DISTILL_BUDGET_INTS, DISTILL_BUDGET_RATES),
                              ("teacher", TEACHER_BUDGET_INTS, TEACHER_BUDGET_RATES)):
        choices = TEACHER_BUDGET_CHOICES if part == "teacher" else {}
        extra = ("masking",) if part == "teacher" else ()
        given = _mapping(source, f"budget.{part}", raw.get(part) or {}, ints + rates + tuple(choices) + extra)
        checked: dict[str, Any] = {}
        for k, v in given.items():
            where = f"budget.{part}.{k}"
            if k == "masking":  # kept as a plain mapping: the study records the budget as JSON
                try:
                    checked[k] = masking_from(v).to_dict()
                except UserError as exc:
                    raise _err(source, where, str(exc)) from None
            elif k in choices:
                if v not in choices[k]:
                    raise _err(source, where, f"{v!r} is not allowed; allowed: {list(choices[k])}")
                checked[k] = v
            elif k in ints:
                checked[k] = _int(source, where, v, low=0 if k in ("pd_steps", "warmup", "transfer_batches") else 1)
            else:
                checked[k] = _num(source, where, v)
                if checked[k] < 0 or (k.endswith("lr") and checked[k] == 0):
                    raise _err(source, where, f"must be {'> 0' if k.endswith('lr') else '>= 0'}, got {v}")
        out.append(checked)
    return out[0], out[1]


def _vocab(source: str, v: Any, vocab_size: int) -> str:
    """A built-in vocabulary's name, or a vocab.txt path (relative to the space file) made absolute;
    its size must be ``fixed.vocab_size``, the rows of every candidate's embedding and output layer."""
    if not isinstance(v, str) or not v:
        raise _err(source, "vocab", f"must be one of {', '.join(VOCABS)} or a vocab.txt path, got {v!r}")
    if v not in VOCABS:
        path = Path(v).expanduser()
        if not path.is_absolute() and Path(source).is_file():  # relative to the space file, as a user reads it
            path = Path(source).resolve().parent / path
        if not path.is_file():
            raise _err(source, "vocab", f"{v!r} is neither a built-in vocabulary ({', '.join(VOCABS)}) nor a file")
        v = str(path.resolve())
    size = vocab_size_of(v)
    if size != vocab_size:
        raise _err(source, "fixed.vocab_size", f"{vocab_size} does not match vocab {v} ({size:,} pieces); set it to {size}")
    return v


def parse_space(raw: Any, source: str = "<space>") -> SearchSpace:
    if raw is None:
        raise UserError(f"{source}: empty; a space file names at least name, fixed, teacher, search and "
                        f"ffn_multiple ('mbnas space show demo --yaml' prints one to start from)")
    raw = _mapping(source, "", raw, TOP_FIELDS, required=("name", "fixed", "teacher", "search"))
    name = raw["name"]
    if not isinstance(name, str) or not name:
        raise _err(source, "name", "must be a non-empty string")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise _err(source, "description", "must be a string")

    given = _mapping(source, "fixed", raw["fixed"], FIXED_FIELDS + FIXED_FLAGS, required=FIXED_FIELDS)
    # seq_len: a window is [CLS] + at least one token + [SEP]
    fixed: dict[str, Any] = {k: _int(source, f"fixed.{k}", given[k], low=3 if k == "seq_len" else 1)
                             for k in FIXED_FIELDS}
    for k in FIXED_FLAGS:
        if k in given:
            if not isinstance(given[k], bool):
                raise _err(source, f"fixed.{k}", f"must be true or false, got {given[k]!r}")
            fixed[k] = given[k]

    vocab = _vocab(source, raw.get("vocab", BERT_VOCAB), fixed["vocab_size"])
    teacher = _mapping(source, "teacher", raw["teacher"], TEACHER_FIELDS, required=TEACHER_FIELDS)
    for k in ("intra_size", "num_ffn", "intermediate_size"):
        _int(source, f"teacher.{k}", teacher[k])
    for k, allowed in (("norm", NORMS), ("act", ACTIVATIONS), ("attention", ATTENTIONS)):
        if teacher[k] not in allowed:
            raise _err(source, f"teacher.{k}", f"{teacher[k]!r} is not allowed; allowed: {list(allowed)}")
    if teacher["intra_size"] % fixed["num_heads"]:
        raise _err(source, "teacher.intra_size",
                   f"{teacher['intra_size']} is not divisible by fixed.num_heads={fixed['num_heads']}")

    search = _mapping(source, "search", raw["search"], SEARCH_FIELDS, required=SEARCH_FIELDS)
    dims = tuple(_dimension(source, k, search[k]) for k in SEARCH_FIELDS)
    for v in next(d for d in dims if d.name == "intra_size").choices:
        if v % fixed["num_heads"]:
            raise _err(source, "search.intra_size.choices",
                       f"{v} is not divisible by fixed.num_heads={fixed['num_heads']}")

    if "ffn_multiple" not in raw:  # no silent default: it sets every candidate's FFN width
        raise _err(source, "ffn_multiple", "is required: the FFN inner width is rounded to a multiple of it "
                                           "(8, 16 or 32 suit most hardware)")
    ffn_multiple = _int(source, "ffn_multiple", raw["ffn_multiple"])
    distill_budget, teacher_budget = _budget(source, raw.get("budget"))

    cons_raw = _mapping(source, "constraints", raw.get("constraints") or {}, CONSTRAINT_FIELDS)
    ratio_window = None
    if "mha_ffn_ratio" in cons_raw:
        w = _mapping(source, "constraints.mha_ffn_ratio", cons_raw["mha_ffn_ratio"], ("min", "max"),
                     required=("min", "max"))
        lo, hi = _num(source, "constraints.mha_ffn_ratio.min", w["min"]), _num(source, "constraints.mha_ffn_ratio.max", w["max"])
        if lo > hi:
            raise _err(source, "constraints.mha_ffn_ratio", f"min {lo} is above max {hi}: no candidate can satisfy it")
        ratio_window = (lo, hi)
    cons = Constraints(
        mha_ffn_ratio=ratio_window,
        max_params_m=_num(source, "constraints.max_params_m", cons_raw["max_params_m"]) if "max_params_m" in cons_raw else None,
        max_gflops=_num(source, "constraints.max_gflops", cons_raw["max_gflops"]) if "max_gflops" in cons_raw else None,
    )
    try:
        space = SearchSpace(name=name, description=description, fixed=fixed, teacher_block=dict(teacher),
                            dimensions=dims, ffn_multiple=ffn_multiple, constraints=cons, source=source,
                            distill_budget=distill_budget, teacher_budget=teacher_budget, vocab=vocab)
        space.teacher  # validates the teacher's shape
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from None
    _check_satisfiable(space)
    return space


def _check_satisfiable(space: SearchSpace) -> None:
    """Contradictory constraints are an error at load time, not an empty search later.

    A bounded random sample (400 draws) stands in for an exhaustive check: the spaces are small
    grids, so a satisfiable region that 400 draws all miss is a space no search would find either.
    """
    if space.constraints == Constraints():
        return
    try:
        space.sample(1, seed=0, max_tries=400)
    except UserError:
        raise UserError(f"{space.source}: field 'constraints': no candidate of the search ranges satisfies them "
                        f"({space.constraints}); loosen them or widen the ranges") from None
