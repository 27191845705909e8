import sys

from convolab.cli import main

sys.exit(main())
