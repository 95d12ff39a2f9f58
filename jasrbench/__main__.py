"""``python -m jasrbench …``: the ``jasrbench`` command, run from the code of the importing workspace.

DVC stage commands and ``torchrun -m jasrbench`` use this form, so a stage runs the code of the
workspace it runs in (an experiment's temporary copy), not whichever checkout the console script
was installed from.
"""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
