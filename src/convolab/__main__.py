import sys

from convolab.cli import main

# Guarded: `convolab serve` trains in a spawned process, which imports this module again as __mp_main__.
if __name__ == "__main__":
    sys.exit(main())
