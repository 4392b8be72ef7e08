import sys

from superres.apps.cli import main

sys.exit(main())
