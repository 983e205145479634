"""Evaluation below every stage that needs it: the logits pass, scores, and temperature scaling."""
