"""`python -m notifyd`."""

import sys

from notifyd.cli import main

sys.exit(main())
