"""`python -m hienet.train CONFIG.yaml` (e.g. `torchrun --nproc_per_node 4 -m hienet.train my.yaml`)."""
import sys

from .cli import main

sys.exit(main())
