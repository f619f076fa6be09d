"""Ripeness: how ready a golden lead is for a sales call, with the reasons that made the score."""
from slowburn.ripeness.rules import RulesModel, score_rules, touch_features

__all__ = ["RulesModel", "score_rules", "touch_features"]
