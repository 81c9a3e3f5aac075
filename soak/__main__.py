"""``python -m soak``: the soak run (``invoke soak``); ``--help`` lists the options."""

import sys

from soak.harness import main

sys.exit(main())
