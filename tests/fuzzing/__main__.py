"""``python -m tests.fuzzing``: the HTTP/2 fuzzer (``invoke fuzz``); ``--help`` lists the options."""

import sys

from tests.fuzzing.harness import main

sys.exit(main())
