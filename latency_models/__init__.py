"""Latency models: an op-level latency predictor with device profiles, and the tools that measure
real runtimes to fit and check them.

Public surface (what search and the dashboard use)::

    from latency_models import load_profile, list_profiles, LatencyEstimate
    profile = load_profile("pixel4-cpu-tflite")     # or a path to a profile JSON
    est = profile.estimate(candidate)               # LatencyEstimate: latency_ms, breakdown, profile, ...
    ms = profile.estimate_many(candidates)          # numpy array, vectorised

Modules: ``features`` (op-level features), ``profile`` (the artefact and prediction), ``fit``
(fitting and error), ``measure`` (litert-torch export + ai-edge-litert timing), ``dataset``
(measurement CSVs), ``tflite_bench`` (phone benchmark suite and ``benchmark_model`` parser),
``calibrate`` (building the built-in profiles and user calibrations). Only ``measure`` and
``tflite_bench.write_bench_suite`` need the ``litert`` extra, imported when called.
"""

from latency_models.profile import DeviceProfile, LatencyEstimate, list_profiles, load_profile

__all__ = ["DeviceProfile", "LatencyEstimate", "list_profiles", "load_profile"]
