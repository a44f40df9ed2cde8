"""Analyses of trained models and data (plots; CKA, Fisher, attacks come later)."""
