"""Pure analyses of trained models: ``cka`` (centred kernel alignment between
representations) and ``fisher`` (Fisher-information shares and traces). No files, no
plots: the studies (``spikebench.studies``) call them and report."""
