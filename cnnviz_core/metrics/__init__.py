"""Evaluation of explanations, one registry of metrics (:mod:`.registry`, ``METRICS``).

Causal curves: deletion/insertion (RISE) and ROAD; confidence: Average Drop and Increase in
Confidence (Grad-CAM++); faithfulness correlation and infidelity; max-sensitivity; randomization:
smooth and efficient MPRT, the random-logit test, and the cascading model-parameter randomization
check (Adebayo et al. 2018, :func:`randomization_check`); localization: the pointing game and its
energy variant. Modules are imported in the order the metrics are listed.
"""
from __future__ import annotations

from .registry import (METRICS, NEEDS, Curve, Explainer, Metric, MetricResult, evaluate, method_explainer,
                       metric_params, register_metric, resolve_metrics)
from .causal import CausalCurve, causal_curve, deletion, gaussian_blur, insertion, saliency_2d
from .road import ROADParams, linear_imputation, noisy_linear_imputation, road
from .confidence import average_drop, confidence_change, increase_in_confidence
from .faithfulness import FaithfulnessCorrelationParams, InfidelityParams, faithfulness_correlation, infidelity
from .robustness import MaxSensitivityParams, max_sensitivity
from .randomisation import (EfficientMPRTParams, RandomLogitParams, SmoothMPRTParams, efficient_mprt, random_logit,
                            randomized_models, smooth_mprt)
from .localization import PointingRow, energy_in_mask, format_table, pointing_game, pointing_game_table
from .sanity import RandomizationStep, compare_maps, default_layers, randomization_check

__all__ = ["METRICS", "NEEDS", "CausalCurve", "Curve", "EfficientMPRTParams", "Explainer",
           "FaithfulnessCorrelationParams", "InfidelityParams", "MaxSensitivityParams", "Metric", "MetricResult",
           "PointingRow", "ROADParams", "RandomLogitParams", "RandomizationStep", "SmoothMPRTParams", "average_drop",
           "causal_curve", "compare_maps", "confidence_change", "default_layers", "deletion", "efficient_mprt",
           "energy_in_mask", "evaluate", "faithfulness_correlation", "format_table", "gaussian_blur",
           "increase_in_confidence", "infidelity", "insertion", "linear_imputation", "max_sensitivity",
           "method_explainer", "metric_params", "noisy_linear_imputation", "pointing_game", "pointing_game_table",
           "random_logit", "randomization_check", "randomized_models", "register_metric", "resolve_metrics", "road",
           "saliency_2d", "smooth_mprt"]
