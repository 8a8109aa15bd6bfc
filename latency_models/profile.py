"""Device profiles: one JSON file per device and runtime that turns a candidate into milliseconds.

A profile carries everything needed to use and to trust it (nn-Meter / HAT habit: one artefact):

    {
      "schema": "mbnas.latency-profile/1",
      "name": "pixel4-cpu-tflite",
      "description": "...",
      "device": "Google Pixel 4 (Snapdragon 855), CPU",
      "conditions": {"runtime": "TFLite (2020)", "threads": 4, "precision": "fp32", "batch": 1, "seq_len": 128},
      "coefficients": {"fc_macs": 1.1e-08, ...},      # milliseconds per unit of each latency feature
      "fit": {"method": "...", "data": [{"path": "...", "sha256": "...", "rows": 60}], ...},
      "error": {"summary": "one line", ...}          # measured, on data the fit did not see
    }

Latency = features(candidate) . coefficients (``latency_models.features``); every feature belongs to
one op class, which gives the breakdown. Every estimate says it is predicted and by which profile.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from latency_models.features import CLASS_MATRIX, FEATURES, INDEX, features_from_ops, features_many
from latency_models.host import host_profile_path
from search_spaces.arch import load_json
from search_spaces.candidate import Candidate
from search_spaces.errors import UserError
from search_spaces.files import builtin_names, builtin_or_file
from search_spaces.ops import OP_CLASSES

SCHEMA = "mbnas.latency-profile/1"
PROFILES_DIR = Path(__file__).parent / "profiles"
HOST = "host"  # the device name of this machine's profile (``load_profile``)
BUILTIN_HOST = "host-cpu-litert"


@dataclass(frozen=True)
class LatencyEstimate:
    """A predicted latency.

    latency_ms: predicted milliseconds for one forward pass (batch 1).
    breakdown: milliseconds per op class; keys are ``search_spaces.ops.OP_CLASSES``; the values sum to latency_ms.
    profile: name of the device profile that predicted it.
    error_summary: that profile's measured error, one line.
    predicted: always True: this number comes from a model, not a measurement.
    """

    latency_ms: float
    breakdown: dict[str, float]
    profile: str
    error_summary: str
    predicted: bool = True
    outside: tuple[str, ...] = ()  # how the candidate lies outside the profile's calibration domain
    extrapolation: str = ""  # the error band of such a prediction (and where it was measured)

    def to_dict(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "breakdown": dict(self.breakdown), "profile": self.profile,
                "predicted": self.predicted, "error_summary": self.error_summary,
                "outside_calibration": list(self.outside), "extrapolation_error": self.extrapolation or None}

    def describe(self) -> str:
        """``62.1 ms (predicted by pixel4-cpu-tflite; leave-one-out error ...)``: how the CLI prints it;
        a prediction outside the profile's calibration says so, with its error band."""
        v = self.latency_ms  # three significant digits at least: a 0.4 ms model is not "0.4"
        shown = f"{v:.1f}" if v >= 10 else f"{v:.2f}" if v >= 1 else f"{v:.3f}"
        out = f"{shown} ms (predicted by {self.profile}; {self.error_summary})"
        if self.outside:
            out += f"; EXTRAPOLATED, outside its calibration ({'; '.join(self.outside)}): {self.extrapolation}"
        return out


# what a profile's calibration domain records: the range of each of these over its calibration points
DOMAIN_FIELDS = {"num_layers": "blocks", "seq_len": "seq", "hidden_size": "hidden", "intra_size": "intra",
                 "num_ffn": "FFNs"}


def domain_of(cands: Sequence[Candidate]) -> dict[str, list[int]]:
    """{field: [min, max]} over ``cands``: where a profile's calibration points lie."""
    return {k: [min(getattr(c, k) for c in cands), max(getattr(c, k) for c in cands)] for k in DOMAIN_FIELDS}


def outside_domain(domain: dict[str, list[int]], c: Candidate, seq_len: int | None = None) -> tuple[str, ...]:
    """How ``c`` lies outside ``domain``, e.g. ``("4 blocks (calibrated 24)", "seq 64 (calibrated 128)")``."""
    out = []
    for k, word in DOMAIN_FIELDS.items():
        if k not in domain:
            continue
        lo, hi = domain[k]
        v = seq_len if k == "seq_len" and seq_len else getattr(c, k)
        if not lo <= v <= hi:
            what = f"{word} {v}" if k == "seq_len" else f"{v} {word}"
            out.append(f"{what} (calibrated {lo}" + (f"-{hi})" if hi != lo else ")"))
    return tuple(out)


@dataclass(frozen=True)
class DeviceProfile:
    """A fitted latency model for one device and runtime (see the module docstring for the file).

    name: ``<device>-<runtime>`` identifier, e.g. ``host-cpu-litert``.
    coefficients: milliseconds per unit of each feature of ``latency_models.features.FEATURES``.
    conditions: runtime, threads, precision, batch, seq_len under which it was measured.
    fit: how it was fitted and on what data (paths, sha256, row counts).
    error: measured error; ``error['summary']`` is the one line shown next to every prediction.
    """

    name: str
    coefficients: dict[str, float]
    conditions: dict[str, Any]
    error: dict[str, Any]
    fit: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    device: str = ""
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.coefficients) - set(FEATURES))
        if unknown:
            raise UserError(f"profile '{self.name}': unknown feature '{unknown[0]}' in coefficients; "
                            f"known: {', '.join(FEATURES)}")
        w = np.array([float(self.coefficients.get(f, 0.0)) for f in FEATURES])
        if not np.all(np.isfinite(w)):
            raise UserError(f"profile '{self.name}': coefficients must be finite numbers")
        if np.any(w < 0):  # a cost below zero predicts negative latencies (fits are non-negative)
            bad = FEATURES[int(np.argmax(w < 0))]
            raise UserError(f"profile '{self.name}': coefficient '{bad}' is negative ({w[INDEX[bad]]:g}); op costs "
                            f"are >= 0")
        object.__setattr__(self, "_w", w)
        object.__setattr__(self, "_w_class", w[:, None] * CLASS_MATRIX)  # (features, classes)

    # ----------------------------------------------------------------------------------------
    @property
    def error_summary(self) -> str:
        return str(self.error.get("summary", "error not measured"))

    @property
    def content_hash(self) -> str:
        """12 hex digits of sha256 over what a prediction depends on (the costs) and how it is labelled
        (the error summary): a profile file calibrated again in place gets another one."""
        blob = json.dumps({"coefficients": {f: float(self._w[INDEX[f]]) for f in FEATURES},
                           "error": self.error_summary}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def weights(self) -> np.ndarray:
        """Coefficients as a vector in ``FEATURES`` order (a copy)."""
        return self._w.copy()

    def estimate(self, c: Candidate, seq_len: int | None = None) -> LatencyEstimate:
        """Predicted latency of one candidate, with its per-op-class breakdown.

        Uses the op-list features (the scalar reference); ``estimate_many`` gives the same numbers.
        """
        x = features_from_ops(c, seq_len)
        per_class = x @ self._w_class
        breakdown = {k: float(v) for k, v in zip(OP_CLASSES, per_class)}
        outside = self.outside_domain(c, seq_len)
        return LatencyEstimate(latency_ms=float(per_class.sum()), breakdown=breakdown, profile=self.name,
                               error_summary=self.error_summary, outside=outside,
                               extrapolation=self.extrapolation_error if outside else "")

    def outside_domain(self, c: Candidate, seq_len: int | None = None) -> tuple[str, ...]:
        """How ``c`` lies outside this profile's calibration points (empty: inside, or not recorded)."""
        return outside_domain(self.fit.get("domain") or {}, c, seq_len)

    def error_over(self, cands: Sequence[Candidate]) -> str:
        """The error line to show next to predictions of ``cands`` (a study's trials, a space's samples):
        the profile's measured error, and how many of them it extrapolates to, with that band."""
        outs = [o for o in (self.outside_domain(c) for c in cands) if o]
        if not outs:
            return self.error_summary
        return (f"{self.error_summary}; {len(outs)} of {len(cands)} EXTRAPOLATED outside its calibration "
                f"(e.g. {'; '.join(outs[0])}): {self.extrapolation_error}")

    @property
    def extrapolation_error(self) -> str:
        """One line: the error band outside the calibration domain, measured or said to be unmeasured."""
        e = self.error.get("extrapolation")
        if not e:
            return "error there not measured"
        return (f"error up to {e['p90_abs_pct']:.0f}% (p90; median {e['median_signed_pct']:+.0f}%), measured on "
                f"{e['measured_on']} ({e['source']})")

    def estimate_many(self, cands: Sequence[Candidate], seq_len: int | None = None) -> np.ndarray:
        """Predicted latency (ms) of many candidates at once: a float array, one entry per candidate."""
        return features_many(cands, seq_len) @ self._w

    def breakdown_many(self, cands: Sequence[Candidate], seq_len: int | None = None) -> np.ndarray:
        """(n, len(OP_CLASSES)) predicted milliseconds per op class."""
        return features_many(cands, seq_len) @ self._w_class

    # ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "name": self.name, "description": self.description, "device": self.device,
                "conditions": self.conditions,
                "coefficients": {f: float(self.coefficients.get(f, 0.0)) for f in FEATURES},
                "fit": self.fit, "error": self.error}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, d: Any, where: str = "profile") -> "DeviceProfile":
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise UserError(f"{where}: not a latency profile (expected a JSON object with schema {SCHEMA!r})")
        for k in ("name", "coefficients", "conditions", "error"):
            if k not in d:
                raise UserError(f"{where}: missing field '{k}'")
        if not isinstance(d["coefficients"], dict):
            raise UserError(f"{where}: field 'coefficients' must be an object of feature -> ms per unit")
        missing = [f for f in FEATURES if f not in d["coefficients"]]
        if missing and set(d["coefficients"]) <= set(FEATURES):  # not silently 0 (unknown names: __post_init__)
            raise UserError(f"{where}: coefficients lack '{missing[0]}'" + (f" and {len(missing) - 1} more"
                            if len(missing) > 1 else "") + "; write profiles with 'mbnas latency calibrate'")
        try:
            return cls(name=str(d["name"]), coefficients={k: float(v) for k, v in d["coefficients"].items()},
                       conditions=dict(d["conditions"]), error=dict(d["error"]), fit=dict(d.get("fit") or {}),
                       description=str(d.get("description", "")), device=str(d.get("device", "")))
        except (TypeError, ValueError) as exc:
            raise UserError(f"{where}: malformed profile ({exc})") from None


def list_profiles() -> list[str]:
    """Names of the built-in device profiles."""
    return builtin_names(PROFILES_DIR, ".json")


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """A built-in profile by name, or a profile JSON file (e.g. one written by ``mbnas latency calibrate``).
    ``host``: this machine's own (``mbnas latency calibrate`` on timings made here keeps it, keyed by
    the CPU's fingerprint), else the built-in ``host-cpu-litert``, which then notes the other CPU."""
    if str(name_or_path) == HOST:
        mine = host_profile_path()
        name_or_path = mine if mine.is_file() else BUILTIN_HOST
    p = builtin_or_file(name_or_path, PROFILES_DIR, ".json", "device profile", suffixes=(".json",))
    prof = DeviceProfile.from_dict(load_json(p), where=str(p))
    object.__setattr__(prof, "path", p)
    return prof
