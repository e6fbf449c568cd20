import sys

from tests.carrier.cli import main

sys.exit(main())
