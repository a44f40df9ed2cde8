"""Metrics of trained models: ``efficiency`` counts synaptic operations, activation
sparsity and membrane updates under NeuroBench's names, for MLPs, conv SNNs and hybrid
heads."""
