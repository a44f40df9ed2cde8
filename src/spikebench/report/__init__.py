"""Reports: Markdown sections and tables (``markdown``), plots of what a network sees
(``samples``). Figures are matplotlib Figure objects written by ``spikebench.io``."""
