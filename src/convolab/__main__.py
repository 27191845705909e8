import os
import sys

from convolab.cli import main

# Guarded: `convolab serve` trains in a spawned process, which imports this module again as __mp_main__.
if __name__ == "__main__":
    status = main()
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:   # a rank torchrun started (`python -m convolab`)
        from convolab.distributed import end_rank_process

        end_rank_process(status)   # ends the process here: see there why
    sys.exit(status)
