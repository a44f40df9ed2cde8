"""Published tables and settings, one file per paper family: ``locality`` (Lin et al.,
IEEE Access 2025: Tables II-IV and the fidelity audit's settings)."""
