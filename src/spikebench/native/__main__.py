"""python -m spikebench.native: build the compiled time loops."""

import sys

from spikebench.native import main

sys.exit(main())
