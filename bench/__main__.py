"""``python -m bench``: the benchmark harness (``invoke bench``); ``--help`` lists the options."""

import sys

from bench.harness import main

sys.exit(main())
