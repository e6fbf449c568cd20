import sys

from tests.sipclient.cli import main

sys.exit(main())
