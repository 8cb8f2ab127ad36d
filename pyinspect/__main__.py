"""``python -m pyinspect ...`` is the ``pyinspect`` command."""

import sys

from pyinspect.cli import main

sys.exit(main())
