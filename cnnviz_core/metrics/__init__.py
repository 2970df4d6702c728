"""Evaluation of explanations: deletion/insertion (RISE), pointing game and its energy variant,
and the model-parameter randomization sanity check (Adebayo et al. 2018)."""
from __future__ import annotations

from .causal import CausalCurve, causal_curve, deletion, gaussian_blur, insertion, saliency_2d
from .localization import PointingRow, energy_in_mask, format_table, pointing_game, pointing_game_table
from .sanity import RandomizationStep, compare_maps, default_layers, randomization_check

__all__ = ["CausalCurve", "PointingRow", "RandomizationStep", "causal_curve", "compare_maps", "default_layers",
           "deletion", "energy_in_mask", "format_table", "gaussian_blur", "insertion", "pointing_game",
           "pointing_game_table", "randomization_check", "saliency_2d"]
