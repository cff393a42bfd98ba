"""Entry point of a search: ``python search/run.py --config configs/default.yaml [overrides]``.

Also what ``ray submit cluster.yaml search/run.py -- --config ...`` runs on a head node, where this file
arrives alone: it imports the installed ``ragsweep`` package and nothing beside it.
"""

import os
import sys

# Running a file puts its folder first on sys.path; drop it so our module names never shadow others.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

from ragsweep.search.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["search", *sys.argv[1:]]))
